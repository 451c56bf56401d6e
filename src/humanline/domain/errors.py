"""Domain errors: what went wrong, in the domain's terms.

Each error carries a machine-readable `reason` (UPPER_SNAKE_CASE) and `metadata` with ids,
never customer text. The gRPC layer maps the error class to a status code once, at its
boundary; nothing below it knows about status codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class DomainError(Exception):
    """Base of all errors the service reports to its callers."""

    default_reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request (e.g. `required_skills[1].min_proficiency`)."""

    field: str
    description: str


class InvalidArgument(DomainError):
    """The request itself is malformed; carries every field violation found."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        fields = ", ".join(v.field for v in violations[:MAX_VIOLATIONS])
        more = len(violations) - MAX_VIOLATIONS
        super().__init__(
            f"invalid fields: {fields}" + (f" and {more} more" if more > 0 else ""), reason=reason
        )
        self.violations = violations[:MAX_VIOLATIONS]


# A hostile request can break thousands of rules at once (a mask of 10,000 bad paths): the
# answer names the first ones only, so that it fits any client's trailer size limit.
MAX_VIOLATIONS = 20


class NotFound(DomainError):
    """The named resource does not exist."""

    default_reason = "NOT_FOUND"

    @classmethod
    def of(cls, kind: str, key: str) -> NotFound:
        """`no such agent`, reason AGENT_NOT_FOUND, metadata {"agent_id": key}."""
        return cls(
            f"no such {kind}", reason=f"{kind.upper()}_NOT_FOUND", metadata={f"{kind}_id": key}
        )


class AlreadyExists(DomainError):
    """The resource, or the idempotency key with other content, already exists."""

    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The request is well formed but the resource is not in a state that allows it."""

    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    """The caller may not act on this resource."""

    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller did not say who it is, or its credentials do not prove it."""

    default_reason = "UNAUTHENTICATED"


class Aborted(DomainError):
    """The operation lost a race with a concurrent one; the caller may retry."""

    default_reason = "ABORTED"

    @classmethod
    def changed(cls, kind: str, key: str) -> Aborted:
        """`the offer changed meanwhile`, reason OFFER_CHANGED, metadata {"offer_id": key}."""
        return cls(
            f"the {kind} changed meanwhile; retry",
            reason=f"{kind.upper()}_CHANGED",
            metadata={f"{kind}_id": key},
        )


class Unavailable(DomainError):
    """The service cannot do it right now (storage unreachable, shutting down); retry."""

    default_reason = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    """The caller is over one of its limits (its call rate, its open streams); it may retry
    after `retry_after` seconds (None: when it has closed something)."""

    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Violations:
    """Collects field violations so a request reports all of its problems at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Records one violation."""
        self._items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        """Records a violation unless `ok`; returns `ok`."""
        if not ok:
            self.add(field, description)
        return ok

    def raise_if_any(self) -> None:
        """Raises InvalidArgument with everything collected, if anything was."""
        if self._items:
            raise InvalidArgument(list(self._items))
