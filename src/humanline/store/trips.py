"""Round trips to the database, counted: a store's total, and those of a block of work.

On PostgreSQL a round trip is a request the replica sends and then waits on for the
database's answer: a statement, BEGIN, COMMIT, the preparing of a statement new to the
connection. On SQLite, whose database runs in the process, it is a statement handed to
SQLite, BEGIN and COMMIT included. Each is added to the store's total (`RoundTrips.total`,
on `/metrics` as `humanline_store_round_trips_total`) and to every `counting()` block under
way in the task that made it (a task started inside a block counts into it too).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class Count:
    """The round trips of a `counting()` block so far, and how many of them prepared a
    statement new to its connection (PostgreSQL's; a connection prepares each statement
    once, so those are the first uses' alone)."""

    value: int = 0
    prepares: int = 0

    @property
    def steady(self) -> int:
        """The round trips a connection that had prepared everything would have made."""
        return self.value - self.prepares


_block: ContextVar[Count | None] = ContextVar("humanline_round_trips", default=None)


class RoundTrips:
    """One store's round trips."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int = 1, *, preparing: bool = False) -> None:
        """Counts `n` round trips, in the total and in the block under way."""
        self.total += n
        block = _block.get()
        if block is not None:
            block.value += n
            if preparing:
                block.prepares += n


@contextmanager
def counting() -> Iterator[Count]:
    """Counts the round trips this task makes in the block (a block inside it counts into
    both)."""
    count = Count()
    token = _block.set(count)
    try:
        yield count
    finally:
        _block.reset(token)
        outer = _block.get()
        if outer is not None:
            outer.value += count.value
            outer.prepares += count.prepares
