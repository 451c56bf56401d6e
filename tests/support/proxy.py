"""A TCP proxy between a client and a server that a test can cut, as a network would.

`TcpProxy(upstream)` listens on a port of its own and pipes each connection to `upstream`.
`cut()` drops every live connection at once (a reset, no goodbye: a lost Wi-Fi); `refuse()`
stops listening, so reconnects are refused until `admit()` listens again on the same port.
Clients stay on the proxy's address throughout, as they would on a load balancer's.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Pipes connections on 127.0.0.1:`port` to `upstream` (host:port) until told not to."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0  # accepted so far

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def admit(self) -> None:
        """Listens (again, on the same port once it has one)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Stops listening: new connections are refused. Live ones go on."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def cut(self) -> None:
        """Drops every live connection with a reset."""
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.cut()
        await self.refuse()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()  # nothing upstream: the client sees the connection fail
            return
        self.connections += 1
        self._links |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink, (writer, up_writer)))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        for end in link:  # one side closed or failed: so does the other
            end.transport.abort()
            self._links.discard(end)
