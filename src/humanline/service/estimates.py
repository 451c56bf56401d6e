"""Wait estimates for bots, from numbers kept fresh off the hot path.

An estimate needs three numbers the store can only sum up: the capacity of the agents online
who could serve a kind of handoff (an aggregate over every agent with its skills, 5 ms with
5,000 of them), the mean handle time of the last hour's latest thousand completions of its
type and the mean time agents took to accept their last
thousand offers. None may hold up a request, nor the embedded store's writer, whose
statements run on the event loop. So each is read on a snapshot of its own, kept for a short
while, and, once stale, still served while one background task reads it anew; a request
waits only for a number never read, or one stale for long (after a quiet spell). The fourth
number, how many handoffs ahead compete for the same agents, is the handoff's own: it is
read for a queued handoff only (an offered one waits for its agent's answer), on a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

import structlog

from humanline.domain.model import Handoff, HandoffState, SkillRequirement
from humanline.domain.rules import DispatchPolicy, estimate_wait
from humanline.store.port import EligibleSupply, Store, StoreError

log = structlog.get_logger("humanline.estimates")

HANDLE_TIME_WINDOW = timedelta(hours=1)
ANSWERS = 1000  # the latest accepted offers whose time to accept makes the mean
HANDLE_TIMES = 1000  # the latest completions (of the hour) whose handle time makes the mean
HANDLE_TIME_FRESH_SECONDS = 5.0
SUPPLY_FRESH_SECONDS = 1.0
STALE_LIMIT = 5  # times the fresh time: older than that, a request waits for a new reading
SUPPLY_KEYS = 1024  # kinds of handoff (skills, language) kept; beyond, the oldest go

K = TypeVar("K", bound=Hashable)
Kind = tuple[tuple[SkillRequirement, ...], str | None]  # a handoff's skills and language
V = TypeVar("V")


@dataclass(slots=True)
class _Reading(Generic[V]):
    value: V
    at: float  # the clock's time when it was read


class Refreshed(Generic[K, V]):
    """Values read by `read(key)`, served from memory: fresh ones as they are, stale ones
    while one background task reads them again, very stale or missing ones after reading."""

    def __init__(
        self,
        read: Callable[[K], Awaitable[V]],
        fresh_for: float,
        *,
        keys: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._clock = clock
        self._fresh_for = fresh_for
        self._keys = keys
        self._readings: dict[K, _Reading[V]] = {}
        self._refreshing: dict[K, asyncio.Task[None]] = {}

    async def get(self, key: K) -> V:
        """The value for `key`; StoreError when it must be read and cannot be."""
        reading = self._readings.get(key)
        if reading is None:
            return await self._load(key)
        age = self._clock() - reading.at
        if age >= self._fresh_for * STALE_LIMIT:
            return await self._load(key)
        if age >= self._fresh_for and key not in self._refreshing:
            task = asyncio.create_task(self._refresh(key), name="estimate-refresh")
            self._refreshing[key] = task
        return reading.value

    async def _load(self, key: K) -> V:
        value = await self._read(key)
        if key not in self._readings and len(self._readings) >= self._keys:
            del self._readings[next(iter(self._readings))]  # the oldest key
        self._readings[key] = _Reading(value, self._clock())
        return value

    async def _refresh(self, key: K) -> None:
        try:
            await self._load(key)
        except StoreError as exc:  # the stale value serves on; the next request tries again
            log.warning("estimate_refresh_failed", error=str(exc))
        finally:
            self._refreshing.pop(key, None)

    async def stop(self) -> None:
        """Cancels the readings under way."""
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class WaitEstimates:
    """Estimated waits of handoffs, from the eligible supply, the handoffs ahead that the
    same agents could take, and the recent mean handle time of the handoff's type."""

    def __init__(self, store: Store, policy: DispatchPolicy) -> None:
        self._store = store
        self._policy = policy
        self._supply: Refreshed[Kind, EligibleSupply] = Refreshed(
            self._read_supply, SUPPLY_FRESH_SECONDS, keys=SUPPLY_KEYS
        )
        # By interaction type; None: over every type.
        self._handle_time: Refreshed[str | None, timedelta | None] = Refreshed(
            self._read_handle_time, HANDLE_TIME_FRESH_SECONDS, keys=SUPPLY_KEYS
        )
        self._answer_time: Refreshed[None, timedelta] = Refreshed(
            self._read_answer_time, HANDLE_TIME_FRESH_SECONDS
        )

    async def wait(self, handoff: Handoff) -> timedelta | None:
        """The estimated wait of a waiting handoff until an agent accepts it: for a free slot
        of an eligible agent, then for that agent's answer (the recent mean time to accept)."""
        answer = await self._answer_time.get(None)
        if handoff.state is HandoffState.OFFERED:
            return answer  # an agent has it on offer now
        # Queued: matching offers a handoff to a free eligible agent as soon as there is one,
        # so none is free (or one is about to take it: on PostgreSQL, a new handoff is
        # matched right after its request commits, and for that moment this is pessimistic).
        request = handoff.request
        supply = await self._supply.get((request.required_skills, request.language))
        if supply.capacity <= 0:
            return None  # nobody online could take it: no honest estimate
        async with self._store.read() as uow:
            ahead = await uow.handoffs.competing_ahead(handoff)
        slot = estimate_wait(
            ahead=ahead,
            eligible_capacity=supply.capacity,
            mean_handle_time=await self._mean_handle_time(request.interaction_type),
        )
        return None if slot is None else slot + answer

    async def _mean_handle_time(self, interaction_type: str) -> timedelta:
        """The last hour's mean handle time of the type, else of every type, else the
        configured default."""
        mean = await self._handle_time.get(interaction_type)
        if mean is None:
            mean = await self._handle_time.get(None)
        return mean or self._policy.default_handle_time

    async def stop(self) -> None:
        """Cancels the readings under way (before the store closes)."""
        await self._supply.stop()
        await self._handle_time.stop()
        await self._answer_time.stop()

    async def _read_supply(self, kind: Kind) -> EligibleSupply:
        async with self._store.read() as uow:
            return await uow.agents.supply_for(*kind)

    async def _read_answer_time(self, _: None) -> timedelta:
        async with self._store.read() as uow:
            mean = await uow.offers.mean_answer_time(uow.now - HANDLE_TIME_WINDOW, ANSWERS)
        return mean or timedelta(0)

    async def _read_handle_time(self, interaction_type: str | None) -> timedelta | None:
        async with self._store.read() as uow:
            since = uow.now - HANDLE_TIME_WINDOW
            return await uow.handoffs.mean_handle_time(since, HANDLE_TIMES, interaction_type)
