"""Errors at the gRPC boundary: domain errors become rich `google.rpc.Status` answers.

Every domain error maps to one status code, with `google.rpc.ErrorInfo` (reason, domain,
metadata) and, for invalid arguments, `google.rpc.BadRequest` field violations, sent through
grpcio-status so any gRPC client can read them. Store failures are UNAVAILABLE (retryable);
anything unexpected is INTERNAL with no details, and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from humanline.domain.access import Principal, Role
from humanline.domain.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from humanline.grpc.auth import Gate
from humanline.store.port import StoreError

ERROR_DOMAIN = "humanline"


class StreamDeadline(DomainError):
    """A stream went silent for longer than allowed (no hello, missed heartbeats)."""

    default_reason = "HEARTBEAT_MISSED"


STORE_UNAVAILABLE = Unavailable("storage is unavailable; retry", reason="STORE_UNAVAILABLE")
SHUTTING_DOWN = Unavailable(
    "the server is shutting down; reconnect (and resume) shortly", reason="SERVER_SHUTTING_DOWN"
)
DRAINING = Unavailable(
    "this server is stopping and hands its agents over; reconnect now (to another server) "
    "and resume",
    reason="SERVER_DRAINING",
)
log = structlog.get_logger("humanline.grpc")

CODES: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Aborted: grpc.StatusCode.ABORTED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    StreamDeadline: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: DomainError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    for cls in type(error).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.UNKNOWN


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(error: DomainError) -> status_pb2.Status:
    """The `google.rpc.Status` for a domain error, with ErrorInfo and BadRequest details."""
    code = status_code(error)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
            )
        )
    ]
    if isinstance(error, InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, ResourceExhausted) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1_000_000, int(error.retry_after * 1e9)))  # >= 1 ms
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def google_code(error: DomainError) -> Any:
    """The `google.rpc.Code` number of a domain error (for CommandRejected)."""
    return status_code(error).value[0]


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> NoReturn:
    """Ends the call with the rich status of `error`."""
    status = rpc_status.to_status(rich_status(error))
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")  # pragma: no cover


Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]


class Guarded(Protocol):
    """A servicer whose calls pass the gate."""

    gate: Gate


Servicer = TypeVar("Servicer", bound=Guarded)


async def _handle(context: Context, method: str, exc: BaseException) -> NoReturn:
    if isinstance(exc, DomainError):
        await abort(context, exc)
    if isinstance(exc, StoreError):
        log.error("store_unavailable", method=method, error=str(exc))
        await abort(context, STORE_UNAVAILABLE)
    log.exception("rpc_failed", method=method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise AssertionError("abort returned")  # pragma: no cover


def _code_of(exc: Exception) -> str:
    """The name of the status code `_handle` ends a call failing with `exc` with."""
    if isinstance(exc, DomainError):
        return status_code(exc).name
    if isinstance(exc, StoreError):
        return grpc.StatusCode.UNAVAILABLE.name
    return grpc.StatusCode.INTERNAL.name


def _aborted(context: Context) -> str:
    """The name of the status code a handler aborted its call with."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return grpc.StatusCode.UNKNOWN.name


def authorize(servicer: Guarded, context: Context, roles: tuple[Role, ...]) -> Principal:
    """The call's authenticated principal, if it may make the call now (`Gate.admit`)."""
    return servicer.gate.admit(context, roles)


@contextlib.asynccontextmanager
async def call_boundary(
    servicer: Guarded, method: str, context: Context, *, timed: bool
) -> AsyncIterator[None]:
    """Where a call meets the transport: an exception escaping the block becomes the call's
    status (`_handle`), and the call is counted in the servicer's metrics, if any: its
    status code, and for unary calls (`timed`) its duration. Cancellation and aborts pass
    through untouched (a handler must never swallow them)."""
    started = time.perf_counter()
    code = "OK"
    try:
        yield
    except grpc.aio.AbortError:
        code = _aborted(context)
        raise
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    except Exception as exc:  # CancelledError is a BaseException and passes through
        code = _code_of(exc)
        await _handle(context, method, exc)
    finally:
        metrics = servicer.gate.metrics
        if metrics is not None:
            metrics.observe_rpc(method, time.perf_counter() - started if timed else None, code)


def unary(
    *roles: Role,
) -> Callable[
    [Callable[[Servicer, Request, Context, Principal], Awaitable[Response]]],
    Callable[[Servicer, Request, Context], Awaitable[Response]],
]:
    """A unary handler for callers in `roles`: authenticates the caller first (the handler
    gets its principal), and translates errors into statuses, once, at the boundary."""

    def decorate(
        method: Callable[[Servicer, Request, Context, Principal], Awaitable[Response]],
    ) -> Callable[[Servicer, Request, Context], Awaitable[Response]]:
        name = method.__name__

        @functools.wraps(method)
        async def wrapper(self: Servicer, request: Request, context: Context) -> Response:
            async with call_boundary(self, name, context, timed=True):
                return await method(self, request, context, authorize(self, context, roles))
            raise AssertionError("unreachable: the boundary raised")  # pragma: no cover

        return wrapper

    return decorate


def server_stream(
    *roles: Role,
) -> Callable[
    [Callable[[Servicer, Request, Context, Principal], AsyncIterator[Response]]],
    Callable[[Servicer, Request, Context], AsyncIterator[Response]],
]:
    """A server-streaming handler for callers in `roles`, as `unary`."""

    def decorate(
        method: Callable[[Servicer, Request, Context, Principal], AsyncIterator[Response]],
    ) -> Callable[[Servicer, Request, Context], AsyncIterator[Response]]:
        name = method.__name__

        @functools.wraps(method)
        async def wrapper(
            self: Servicer, request: Request, context: Context
        ) -> AsyncIterator[Response]:
            async with call_boundary(self, name, context, timed=False):
                principal = authorize(self, context, roles)
                async for item in method(self, request, context, principal):
                    yield item

        return wrapper

    return decorate
