"""A TCP proxy in front of PostgreSQL that counts round trips on the wire.

A client of PostgreSQL's extended query protocol sends its messages (Parse, Bind, Execute,
...) and then a Sync, and waits for the server's ReadyForQuery; a simple query is one Query
message, answered the same way. asyncpg prepares a statement with Parse, Describe and a
Flush, and waits for the description. So the round trips a connection made are its Sync,
Query and Flush messages: what the store's own count (`humanline.store.trips`) must agree
with.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

_NEGOTIATIONS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: answered with one byte
_ROUND_TRIPS = {b"S", b"Q", b"H"}  # Sync, Query, Flush


class PgWireCounter:
    """Pipes connections on 127.0.0.1:`port` to PostgreSQL, counting each client's round
    trips in `round_trips`."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0
        self.round_trips = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        pipes = [
            asyncio.create_task(self._from_client(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._pipes.discard(pipe)
            for w in (writer, up_writer):
                w.close()

    async def _from_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:  # untyped messages until the startup message itself
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                writer.write(head + await reader.readexactly(length - 8))
                await writer.drain()
                if code not in _NEGOTIATIONS:
                    break
            while True:
                kind = await reader.readexactly(1)
                size = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack("!i", size)[0] - 4)
                if kind in _ROUND_TRIPS:
                    self.round_trips += 1
                writer.write(kind + size + body)
                await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
