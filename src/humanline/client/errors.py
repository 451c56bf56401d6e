"""Errors the SDK raises: every failed call as one `ApiError`, with the server's details.

humanline answers a failed call with a gRPC status code and, in the `grpc-status-details-bin`
trailer, a `google.rpc.Status` carrying `google.rpc.ErrorInfo` (a machine-readable `reason`
such as OFFER_EXPIRED, ids in `metadata`) and, for INVALID_ARGUMENT, `google.rpc.BadRequest`
with every field violation. `ApiError` unpacks them, so a caller branches on `code` and
`reason` and shows `field_violations` without knowing the wire format. A command refused on
an agent's stream (`command_rejected`) carries the same things and is a `CommandRejected`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (`required_skills[0].skill`) and what is wrong."""

    field: str
    description: str


class ApiError(Exception):
    """A call humanline refused or could not answer.

    `code` is the gRPC status code; `reason` (UPPER_SNAKE_CASE, empty when the server sent
    none, as for transport failures) and `metadata` come from `google.rpc.ErrorInfo`;
    `field_violations` from `google.rpc.BadRequest`.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = field_violations
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" ({self.reason})"
        if self.field_violations:
            text += "; " + "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
        return text

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> ApiError:
        """The error a failed call raised, with the details from its trailers."""
        reason, metadata, violations = "", {}, []
        try:
            status = rpc_status.from_call(error)
        except ValueError:  # details that contradict the status line: ignore them
            status = None
        for packed in status.details if status is not None else ():
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if packed.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif packed.Unpack(bad):
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        return cls(
            error.code(),
            error.details() or "",
            reason=reason,
            metadata=metadata,
            field_violations=tuple(violations),
        )


class CommandRejected(ApiError):
    """The server refused a command on the agent's stream (the stream stays open)."""


class SessionInterrupted(ApiError):
    """The agent's stream broke before the server answered the command; the command may or
    may not have taken effect. The client reconnects on its own: look at the session again
    (`AgentClient.interactions`, `AgentClient.status`) before repeating it."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, message, reason="SESSION_INTERRUPTED")


def status_code(google_code: int) -> grpc.StatusCode:
    """grpc's StatusCode for a `google.rpc.Code` number (as in `command_rejected`)."""
    name = code_pb2.Code.Name(google_code) if google_code in code_pb2.Code.values() else "UNKNOWN"
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
