"""What every SDK client shares: the channel, the token on each call, retries and backoff.

A client owns one `grpc.aio` channel (or borrows the caller's). gRPC itself retries the
idempotent calls when the server cannot be reached (the channel's service config below: up
to 5 attempts on UNAVAILABLE, with exponential backoff), so a bot's call rides out a blip or
a restarted server; calls that are not idempotent (creating an agent, say) are never retried
behind the caller's back. The channel reconnects within 250 ms to 5 s after a lost server
instead of gRPC's default of up to two minutes.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from humanline.client.errors import ApiError

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0  # seconds for a unary call, retries included

# A token, or a function that returns the current one (to refresh before it expires).
Token = str | Callable[[], str] | None

_RETRIED = {
    "humanline.v1.HandoffService": (
        "RequestHandoff",  # idempotent by request_id
        "GetHandoff",
        "WatchHandoff",  # retried only before its first message, as gRPC does for streams
        "CancelHandoff",  # cancelling a cancelled handoff returns it again
        "RecordFeedback",  # idempotent by content
    ),
    "humanline.v1.AgentService": ("CompleteInteraction",),  # idempotent by content
    "humanline.v1.PoolService": (
        "GetAgent",
        "ListAgents",
        "UpdateAgent",  # setting the same fields again changes nothing
        "GetPoolStatus",
        "WatchPoolStatus",
        "GetQualityReport",
        "WatchQualityAlerts",
        "ExportOutcomes",
        "GetRoutingPolicy",
        "ListRoutingPolicies",
        "UpdateRoutingPolicy",
    ),
}

SERVICE_CONFIG = {
    # Several addresses behind one name (dns:/// of a headless service): spread the calls.
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [
                {"service": service, "method": method}
                for service, methods in _RETRIED.items()
                for method in methods
            ],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
    # Tell a quiet connection from a dead one (a NAT that dropped it) within a minute.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


def tls(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials for a client: the CA that signed the server's certificate (None: the
    system's roots), and a client certificate and key for mutual TLS."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs its key, and a key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (a random delay up to `initial * multiplier**n`,
    capped at `maximum`): many agents cut off at once come back spread out, not in a wave."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(attempt, 32))
        return random.uniform(0.0, ceiling)


class Client:
    """The channel and the caller's token; the base of the SDK's clients.

    `target` is any gRPC target (`host:port`, `dns:///humanline.example:443`); without one,
    `HUMANLINE_TARGET` or 127.0.0.1:50051. `token` is the caller's bearer token (from `humanline
    token issue`), or a function returning the current one. `credentials` makes the channel
    TLS (see `tls()`); without them it is plain text. `channel` uses a channel of your own
    instead (the client then leaves it open). `timeout` bounds each unary call, retries
    included. With `wait_for_ready`, a call made while the server cannot be reached waits for
    it (until the timeout) instead of failing with UNAVAILABLE after gRPC's retries: for a bot
    that must ride out a server's restart. Use a client as an async context manager, or
    call `close()`.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        token: Token = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
        options: Iterable[tuple[str, Any]] = (),
        timeout: float = DEFAULT_TIMEOUT,
        wait_for_ready: bool = False,
    ) -> None:
        self.target = target or os.environ.get("HUMANLINE_TARGET") or DEFAULT_TARGET
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self._token = token
        self._owns_channel = channel is None
        if channel is None:
            chosen = dict(CHANNEL_OPTIONS)
            chosen.update(options)
            listed = list(chosen.items())
            if credentials is not None:
                channel = grpc.aio.secure_channel(self.target, credentials, options=listed)
            else:
                channel = grpc.aio.insecure_channel(self.target, options=listed)
        self.channel = channel

    async def close(self) -> None:
        """Closes the channel (unless it was the caller's)."""
        if self._owns_channel:
            await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata that carries the token (none without one)."""
        token = self._token() if callable(self._token) else self._token
        return (("authorization", f"Bearer {token}"),) if token else ()

    async def _unary(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        """One unary call with the token and the client's deadline; an ApiError on failure."""
        try:
            return await method(
                request,
                metadata=self.metadata(),
                timeout=self.timeout,
                wait_for_ready=self.wait_for_ready,
            )
        except grpc.aio.AioRpcError as error:
            raise ApiError.from_rpc_error(error) from None

    async def _stream(
        self, method: Callable[..., grpc.aio.UnaryStreamCall[Any, R]], request: Any
    ) -> AsyncIterator[R]:
        """A server stream's messages; an ApiError when it fails. Leaving the loop early
        cancels the call."""
        call = method(request, metadata=self.metadata(), wait_for_ready=self.wait_for_ready)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise ApiError.from_rpc_error(error) from None
        finally:
            call.cancel()


R = TypeVar("R")


def enum_value(wrapper: EnumTypeWrapper, prefix: str, value: str | int) -> int:
    """An enum's number from its short name (`"high"` for URGENCY_HIGH, any case) or the
    number itself; ValueError names the choices for an unknown name."""
    if isinstance(value, int):
        return value
    name = prefix + value.strip().upper().replace("-", "_")
    names = wrapper.keys()  # an EnumTypeWrapper is no mapping: `in` needs the list
    if name not in names:
        choices = ", ".join(
            k.removeprefix(prefix).lower() for k in names if not k.endswith("UNSPECIFIED")
        )
        raise ValueError(f"{value!r} is not one of {choices}")
    return int(wrapper.Value(name))


def enum_name(wrapper: EnumTypeWrapper, prefix: str, value: int) -> str:
    """The short lower-case name of an enum number (`"high"` for URGENCY_HIGH)."""
    try:
        return str(wrapper.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for an aware datetime (a naive one is taken as UTC)."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def duration(seconds: float | timedelta | None) -> duration_pb2.Duration | None:
    """A Duration for seconds or a timedelta."""
    if seconds is None:
        return None
    value = duration_pb2.Duration()
    value.FromTimedelta(seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds))
    return value


def skill_levels(skills: Mapping[str, int] | None) -> list[tuple[str, int]]:
    """Skills as (name, level) pairs, in the order given."""
    return list((skills or {}).items())
