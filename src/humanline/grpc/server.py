"""The gRPC server: servicers, health, reflection, keepalive, graceful shutdown.

`create_server` returns the server and its bound port (bind port 0 in tests). `serve` runs the
whole process: start the service, serve until SIGTERM or SIGINT, then shut down in order:
health NOT_SERVING; the drain (no more offers from here; each agent's session put in its grace
period and its stream sent a `drain` message and ended, so the agent resumes on another
replica, or after the restart, keeping its work; new agent streams refused); watches told to
end; in-flight calls given `shutdown_grace_seconds`; store closed. Nothing queued or assigned
is lost: it is all in the store.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from humanline import __version__
from humanline.config import Settings
from humanline.domain.access import Principal, Role
from humanline.domain.clock import SystemClock
from humanline.grpc.agent_servicer import AgentServicer
from humanline.grpc.auth import Authenticator, Gate
from humanline.grpc.handoff_servicer import HandoffServicer
from humanline.grpc.limits import RateLimiter, StreamLimiter
from humanline.grpc.pool_servicer import PoolServicer
from humanline.grpc.wire import add_service
from humanline.heap import HeapFreezer
from humanline.policyfile import PolicyFileError
from humanline.policyfile import load as load_policies
from humanline.service.app import Humanline
from humanline.service.metrics import MetricsEndpoint
from humanline.service.retention import RetentionPolicy
from humanline.store import create_store
from humanline.store.port import StoreError
from humanline.tokens import KeyRing, KeyRingError
from humanline.v1 import agent_service_pb2, handoff_service_pb2, pool_service_pb2

log = structlog.get_logger("humanline.server")

AGENT_SERVICE = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"]
HANDOFF_SERVICE = handoff_service_pb2.DESCRIPTOR.services_by_name["HandoffService"]
POOL_SERVICE = pool_service_pb2.DESCRIPTOR.services_by_name["PoolService"]
SERVICE_NAMES = tuple(s.full_name for s in (AGENT_SERVICE, HANDOFF_SERVICE, POOL_SERVICE))

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


@dataclass(frozen=True)
class Limits:
    """What one caller may cost the server (see `humanline.grpc.limits`); 0 turns a limit
    off. The defaults here are off; `Settings` holds the served ones."""

    rate_per_second: float = 0.0
    burst: int = 1
    streams_per_peer: int = 0
    max_message_bytes: int = 4 * 1024 * 1024  # grpc's own default
    # Connections are asked to go (GOAWAY) after this long, so they rebalance over replicas
    # added since; what is still open on them is closed `max_connection_age_grace` later.
    # 0: never (grpc's default).
    max_connection_age: float = 0.0
    max_connection_age_grace: float = 0.0


@dataclass(frozen=True)
class Tls:
    """The listener's certificate and key (PEM), and for mutual TLS the CA that signs the
    client certificates of bots and ops and the second address that requires them."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None
    mtls_listen: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tls | None:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        try:
            ca = settings.tls_client_ca_file
            return cls(
                Path(settings.tls_cert_file).read_bytes(),
                Path(settings.tls_key_file).read_bytes(),
                None if ca is None else Path(ca).read_bytes(),
                settings.mtls_listen,
            )
        except OSError as exc:
            raise StartupError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None


@dataclass
class RunningServer:
    """A server bound to a port (and to `mtls_port` with mutual TLS), with its health
    servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    mtls_port: int | None = None
    gate: Gate = field(default_factory=lambda: Gate(Authenticator(None)))

    async def stop(self, app: Humanline, grace: float) -> None:
        """Graceful shutdown (SIGTERM): health NOT_SERVING at once; the service drains (no
        more offers from here, its agents handed over to the other replicas, new agent
        streams refused) while unary calls go on; then the server stops taking calls and
        gives those in flight `grace` seconds; then the service stops."""
        await self.health.enter_graceful_shutdown()
        await app.drain()
        app.hub.shutdown()
        await self.server.stop(grace)
        await app.stop()


async def create_server(
    app: Humanline,
    listen: str,
    *,
    keys: KeyRing | None,
    reflect: bool = True,
    hello_timeout: float = 10.0,
    limits: Limits = Limits(),
    tls: Tls | None = None,
) -> RunningServer:
    """A started server for `app` on `listen` (host:port; port 0 picks a free one). Callers
    authenticate with tokens signed by `keys`; None lets everybody in (development only).
    With `tls` the listener speaks TLS, and with its client CA a second listener requires
    client certificates, which bots and ops must then call with."""
    mutual = tls is not None and tls.client_ca is not None
    gate = Gate(
        Authenticator(keys),
        RateLimiter(limits.rate_per_second, limits.burst),
        StreamLimiter(limits.streams_per_peer),
        certificates=mutual,
        metrics=app.metrics,
    )
    options = [
        *SERVER_OPTIONS,
        ("grpc.max_receive_message_length", limits.max_message_bytes),
    ]
    if limits.max_connection_age > 0:
        options += [
            ("grpc.max_connection_age_ms", int(limits.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(limits.max_connection_age_grace * 1000)),
        ]
    server = grpc.aio.server(options=options)
    for servicer, service in (
        (AgentServicer(app, gate, hello_timeout=hello_timeout), AGENT_SERVICE),
        (HandoffServicer(app, gate), HANDOFF_SERVICE),
        (PoolServicer(app, gate), POOL_SERVICE),
    ):
        add_service(server, servicer, service)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if reflect:
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    mtls_port = None
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            pair = [(tls.key, tls.cert)]
            port = server.add_secure_port(listen, grpc.ssl_server_credentials(pair))
            if tls.client_ca is not None:
                if tls.mtls_listen is None:
                    raise StartupError("mutual TLS needs an address of its own (mtls_listen)")
                listen = tls.mtls_listen
                mtls_port = server.add_secure_port(
                    listen,
                    grpc.ssl_server_credentials(
                        pair, root_certificates=tls.client_ca, require_client_auth=True
                    ),
                )
    except RuntimeError as exc:
        raise StartupError(
            f"cannot listen on {listen}: is it in use, or the TLS key and certificate "
            f"wrong? ({exc})"
        ) from exc
    await server.start()
    return RunningServer(server, port, health_servicer, mtls_port, gate)


def app_from_settings(settings: Settings) -> Humanline:
    """The service as configured; StartupError for a policy file that cannot be used."""
    try:
        policies = (
            [] if settings.routing_policies is None else load_policies(settings.routing_policies)
        )
    except PolicyFileError as exc:
        raise StartupError(f"HUMANLINE_ROUTING_POLICIES: {exc}") from None
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
        routing_policies=policies,
        quality_window=timedelta(seconds=settings.quality_window_seconds),
        quality_check_interval=settings.quality_check_seconds,
        retention=RetentionPolicy(
            history=timedelta(days=settings.retention_days),
            rollups=timedelta(days=settings.rollup_retention_days),
        ),
    )


def keyring(settings: Settings) -> tuple[KeyRing | None, str]:
    """The keyring callers' tokens are verified with (None: authentication is off), and a
    line saying so. On the embedded store a missing keyring is made (one process, so one
    keyring); replicas must share one, so on PostgreSQL a missing keyring stops the start."""
    if settings.insecure_no_auth:
        log.warning("authentication_off", setting="HUMANLINE_INSECURE_NO_AUTH")
        return None, INSECURE
    path = Path(settings.auth_keys)
    try:
        if path.exists() or not settings.database_url.startswith("sqlite"):
            return KeyRing.load(path), f"callers authenticate with tokens signed by {path}"
        keys = KeyRing.generate()
        keys.save(path)
    except (KeyRingError, OSError) as exc:
        raise StartupError(f"HUMANLINE_AUTH_KEYS: {exc}") from None
    log.info("auth_keys_created", path=str(path), kid=keys.signing_key.kid)
    return keys, f"callers authenticate with tokens signed by {path} (made now)"


INSECURE = """
!!! INSECURE: HUMANLINE_INSECURE_NO_AUTH is set. Every caller is let in without a token, !!!
!!! as any agent, bot or operator. For development on a closed machine only.           !!!"""

TRY_BOT = "demo-bot"
TRY_AGENT = "alice"


def _tokens(keys: KeyRing | None) -> str:
    if keys is None:
        return ""
    try:
        minted = {
            "OPS": keys.issue(Principal(Role.OPS, "ops")),
            "BOT": keys.issue(Principal(Role.BOT, TRY_BOT)),
            "ALICE": keys.issue(Principal(Role.AGENT, TRY_AGENT)),
        }
    except KeyRingError:
        return ""  # public keys only: `humanline token issue` where the private keys are
    lines = "\n".join(f"  export {name}={token}" for name, token in minted.items())
    return f"""
Tokens to try it with (HUMANLINE_PRINT_TOKENS; ops, bot {TRY_BOT}, agent {TRY_AGENT}):
{lines}"""


def _banner(settings: Settings, running: RunningServer, auth: str, tokens: str) -> str:
    host = settings.listen.rsplit(":", 1)[0]
    address = f"{host}:{running.port}"
    header = ' -H "Authorization: Bearer $OPS"' if auth != INSECURE else ""
    if settings.tls_cert_file is None:
        transport, curl, url = "plain text", "--http2-prior-knowledge", f"http://{address}"
    else:
        transport, curl, url = "TLS", "--cacert CA.pem", f"https://{address}"
        if running.mtls_port is not None and settings.mtls_listen is not None:
            mtls = f"{settings.mtls_listen.rsplit(':', 1)[0]}:{running.mtls_port}"
            transport += f"; bots and ops with client certificates on {mtls}"
    return f"""
humanline {__version__} is serving on {address} ({transport}; store: {settings.database_url})
{auth.strip()}{tokens}
Try it from another terminal (buf from npm; any gRPC client works through reflection):
  npx @bufbuild/buf curl --protocol grpc {curl} --list-methods {url}
  npx @bufbuild/buf curl --protocol grpc {curl}{header} \\
      {url}/humanline.v1.PoolService/GetPoolStatus
Stop with Ctrl-C (SIGINT) or SIGTERM: nothing queued or assigned is lost.
"""


LOOPBACK = ("127.", "localhost", "[::1]", "::1")


async def serve(settings: Settings) -> None:
    """Runs the service until SIGTERM or SIGINT (also one that arrives while starting)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    keys, auth = keyring(settings)
    tls = Tls.from_settings(settings)
    app = app_from_settings(settings)
    try:
        await app.start()
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
    try:
        running = await create_server(
            app,
            settings.listen,
            keys=keys,
            reflect=settings.reflection,
            hello_timeout=settings.hello_timeout_seconds,
            limits=Limits(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
                settings.max_streams_per_peer,
                settings.max_message_bytes,
                settings.max_connection_age_seconds,
                settings.max_connection_age_grace_seconds,
            ),
            tls=tls,
        )
    except BaseException:
        await app.stop()
        raise
    metrics = await _serve_metrics(app, running, settings)
    heap = HeapFreezer()  # keeps long-lived streams out of the cycle collector's walks
    heap.start()
    tokens = _tokens(keys) if settings.print_tokens else ""
    if tls is None and not settings.listen.startswith(LOOPBACK):
        log.warning(
            "plaintext_listener",
            listen=settings.listen,
            hint="tokens cross the network readable: set HUMANLINE_TLS_CERT_FILE and "
            "HUMANLINE_TLS_KEY_FILE, or terminate TLS in front of humanline",
        )
    print(_banner(settings, running, auth, tokens), file=sys.stderr, flush=True)
    await stop.wait()
    await heap.stop()
    if metrics is not None:
        await metrics.stop()
    await running.stop(app, settings.shutdown_grace_seconds)


async def _serve_metrics(
    app: Humanline, running: RunningServer, settings: Settings
) -> MetricsEndpoint | None:
    """The Prometheus endpoint on `metrics_listen`, when set (the service and its gRPC
    server are up already: on failure, both are stopped and StartupError raised)."""
    if settings.metrics_listen is None:
        return None
    endpoint = MetricsEndpoint(app.metrics, app.store, refresh=settings.metrics_refresh_seconds)
    try:
        await endpoint.start(settings.metrics_listen)
    except (OSError, StoreError) as exc:
        await endpoint.stop()
        await running.stop(app, 0)
        raise StartupError(f"cannot serve metrics on {settings.metrics_listen}: {exc}") from exc
    return endpoint
