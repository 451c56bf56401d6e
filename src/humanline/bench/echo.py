"""The ceiling: a bare grpc.aio echo service, measured in the same run and with the same
process layout as humanline.

The server (`python -m humanline.bench.echo`, on HUMANLINE_LISTEN like `humanline serve`) has
one unary method taking and returning bytes: no protobuf, no store, no logging. It answers
every request with a fixed payload of HUMANLINE_BENCH_ECHO_RESPONSE_BYTES bytes, the size of
the RequestHandoffResponses the lifecycle run received. Client processes send requests of
the size of the RequestHandoffRequests the bench sends, in a closed loop, as many at once as
the lifecycle run's bots. A health service answers the start-up probe only.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from humanline.bench.load import Window, closed_loop

SERVICE = "humanline.bench.Echo"
METHOD = f"/{SERVICE}/Call"
RESPONSE_BYTES = "HUMANLINE_BENCH_ECHO_RESPONSE_BYTES"
CALL_TIMEOUT = 30.0


async def serve() -> None:
    """Serves the echo until SIGTERM or SIGINT."""
    payload = b"x" * int(os.environ[RESPONSE_BYTES])

    async def call(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return payload

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(call)}
            ),
        )
    )
    await serve_until_signalled(server)


async def serve_until_signalled(server: grpc.aio.Server) -> None:
    """Adds a health service that says SERVING (for the start-up probe), serves on
    HUMANLINE_LISTEN until SIGTERM or SIGINT, then stops. The ceilings' servers share it."""
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(os.environ["HUMANLINE_LISTEN"])
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


async def load(
    channel: grpc.aio.Channel,
    request_bytes: int,
    concurrency: int,
    window: Window,
    errors: Counter[str],
) -> tuple[int, int]:
    """Echo calls in a closed loop over the window; returns (calls that ended in its counted
    part, all calls)."""
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    payload = b"x" * request_bytes

    async def once() -> bool:
        try:
            await echo(payload, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            errors[f"echo {error.code().name}"] += 1
            return False
        return True

    return await closed_loop(concurrency, window, once)


if __name__ == "__main__":
    asyncio.run(serve())
