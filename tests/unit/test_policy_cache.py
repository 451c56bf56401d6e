"""The routing policies a replica keeps (`PolicyCache`): read whole once, and again only after
a change, when too old, or when a change came while they were being read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from humanline.domain.routing import DEFAULT_FALLBACK, RoutingPolicy
from humanline.service.policies import PolicyCache
from humanline.store.port import PolicySource, StoredPolicy

AT = datetime(2026, 12, 7, tzinfo=UTC)


@dataclass
class Store:
    """As much of a store as the cache reads: the stored policies, counted, and a gate that
    holds a read until the test opens it."""

    stored: list[RoutingPolicy] = field(default_factory=list)
    reads: int = 0
    gate: asyncio.Event | None = None

    @asynccontextmanager
    async def read(self, **_: Any) -> AsyncIterator[Store]:
        yield self

    @property
    def policies(self) -> Store:
        return self

    async def all(self) -> list[StoredPolicy]:
        self.reads += 1
        found = [StoredPolicy(p, PolicySource.API, AT, AT) for p in self.stored]
        if self.gate is not None:
            await self.gate.wait()
        return found


def _warranty(seconds: int) -> RoutingPolicy:
    return RoutingPolicy("warranty_claim", target=timedelta(seconds=seconds))


async def test_the_policies_are_read_once_and_again_after_a_change() -> None:
    store = Store([_warranty(40)])
    cache = PolicyCache(store, max_age=3600)  # type: ignore[arg-type]
    chosen = await asyncio.gather(*(cache.choose("warranty_claim") for _ in range(20)))
    assert {c.policy.target for c in chosen} == {timedelta(seconds=40)}
    assert store.reads == 1  # twenty handoffs at once: one read
    other = await cache.choose("something_else")
    assert (other.policy, other.fallback) == (DEFAULT_FALLBACK, True)
    fraud = await cache.choose("fraud")  # built in
    assert not fraud.fallback
    assert store.reads == 1
    store.stored = [_warranty(50)]
    assert (await cache.choose("warranty_claim")).policy.target == timedelta(seconds=40)
    cache.changed()
    assert (await cache.choose("warranty_claim")).policy.target == timedelta(seconds=50)
    assert store.reads == 2


async def test_policies_older_than_their_age_are_read_again() -> None:
    store = Store([_warranty(40)])
    cache = PolicyCache(store, max_age=0)  # type: ignore[arg-type]
    await cache.choose("warranty_claim")
    store.stored = []
    chosen = await cache.choose("warranty_claim")
    assert chosen.fallback
    assert store.reads == 2


async def test_a_change_heard_during_a_read_makes_the_next_handoff_read_again() -> None:
    store = Store([_warranty(40)], gate=asyncio.Event())
    cache = PolicyCache(store, max_age=3600)  # type: ignore[arg-type]
    reading = asyncio.create_task(cache.choose("warranty_claim"))
    while store.reads == 0:
        await asyncio.sleep(0)
    cache.changed()  # committed after the read began: what it read may be older
    store.stored = [_warranty(50)]
    store.gate.set()  # type: ignore[union-attr]
    assert (await reading).policy.target == timedelta(seconds=40)
    assert (await cache.choose("warranty_claim")).policy.target == timedelta(seconds=50)
    assert store.reads == 2
