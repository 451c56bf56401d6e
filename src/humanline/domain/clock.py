"""Time as the domain sees it: a clock that says what time it is, in UTC.

The service reads time once per transaction from the store, which takes it from a `Clock`
(the embedded store) or from the database (PostgreSQL). Tests use `FakeClock`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time, timezone-aware in UTC."""

    def now(self) -> datetime:
        """The current time."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        """The current time."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        """The current (fake) time."""
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Moves time forward by `delta` (seconds if a number) and returns the new time."""
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now
