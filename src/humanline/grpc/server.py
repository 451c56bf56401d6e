"""The gRPC server: servicers, health, reflection, keepalive, graceful shutdown.

`create_server` returns the server and its bound port (bind port 0 in tests). `serve` runs the
whole process: start the service, serve until SIGTERM or SIGINT, then shut down in order:
health NOT_SERVING, agent streams and watches told to end (agents resume after the restart or
on another replica), in-flight calls given `shutdown_grace_seconds`, drops recorded, store
closed. Nothing queued or assigned is lost: it is all in the store.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from humanline import __version__
from humanline.config import Settings
from humanline.domain.clock import SystemClock
from humanline.grpc.agent_servicer import AgentServicer
from humanline.grpc.handoff_servicer import HandoffServicer
from humanline.grpc.pool_servicer import PoolServicer
from humanline.heap import HeapFreezer
from humanline.service.app import Humanline
from humanline.store import create_store
from humanline.store.port import StoreError
from humanline.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    handoff_service_pb2,
    handoff_service_pb2_grpc,
    pool_service_pb2,
    pool_service_pb2_grpc,
)

SERVICE_NAMES = (
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    handoff_service_pb2.DESCRIPTOR.services_by_name["HandoffService"].full_name,
    pool_service_pb2.DESCRIPTOR.services_by_name["PoolService"].full_name,
)

# Agent apps hold streams for hours over mobile networks: the server pings idle connections
# to notice dead ones, and lets clients ping every 10 s (the default would refuse pings
# more often than every 5 minutes and close the connection).
SERVER_OPTIONS = [
    # grpc turns SO_REUSEPORT on by default: a second server on a port in use would share it
    # and split clients between two stores. Refuse to start instead.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class StartupError(Exception):
    """The server cannot start (the address is taken, the store is in use)."""


@dataclass
class RunningServer:
    """A server bound to a port, with its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer

    async def stop(self, app: Humanline, grace: float) -> None:
        """Graceful shutdown: not serving, streams ended, calls finished, service stopped."""
        await self.health.enter_graceful_shutdown()
        app.hub.shutdown()
        await self.server.stop(grace)
        await app.stop()


async def create_server(
    app: Humanline,
    listen: str,
    *,
    reflect: bool = True,
    hello_timeout: float = 10.0,
) -> RunningServer:
    """A started server for `app` on `listen` (host:port; port 0 picks a free one)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentServicer(app, hello_timeout=hello_timeout), server
    )
    handoff_service_pb2_grpc.add_HandoffServiceServicer_to_server(HandoffServicer(app), server)
    pool_service_pb2_grpc.add_PoolServiceServicer_to_server(PoolServicer(app), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if reflect:
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {listen}: is it in use? ({exc})") from exc
    await server.start()
    return RunningServer(server, port, health_servicer)


def app_from_settings(settings: Settings) -> Humanline:
    """The service as configured."""
    clock = SystemClock()
    store = create_store(
        settings.database_url, clock, pool_size=settings.db_pool_size, notify=settings.notify
    )
    return Humanline(
        store,
        settings.policy(),
        clock=clock,
        sweep_interval=settings.sweep_interval_seconds,
        watch_interval=settings.watch_interval_seconds,
        replica_heartbeat=settings.replica_heartbeat_seconds,
        replica_ttl=settings.replica_ttl_seconds,
    )


def _banner(settings: Settings, port: int) -> str:
    host = settings.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    return f"""
humanline {__version__} is serving on {address}  (store: {settings.database_url})
Try it from another terminal (buf from npm; any gRPC client works through reflection):
  npx @bufbuild/buf curl --protocol grpc --http2-prior-knowledge --list-methods http://{address}
  npx @bufbuild/buf curl --protocol grpc --http2-prior-knowledge \\
      http://{address}/humanline.v1.PoolService/GetPoolStatus
Stop with Ctrl-C (SIGINT) or SIGTERM: nothing queued or assigned is lost.
"""


async def serve(settings: Settings) -> None:
    """Runs the service until SIGTERM or SIGINT (also one that arrives while starting)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = app_from_settings(settings)
    try:
        await app.start()
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
    try:
        running = await create_server(
            app,
            settings.listen,
            reflect=settings.reflection,
            hello_timeout=settings.hello_timeout_seconds,
        )
    except BaseException:
        await app.stop()
        raise
    heap = HeapFreezer()  # keeps long-lived streams out of the cycle collector's walks
    heap.start()
    print(_banner(settings, running.port), file=sys.stderr, flush=True)
    await stop.wait()
    await heap.stop()
    await running.stop(app, settings.shutdown_grace_seconds)
