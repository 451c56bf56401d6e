"""Routing policy use cases: the policies in force, set by the policy file at start and by ops.

In force for an interaction type is, in this order: the policy stored for it (set by the
file or over PoolService), its built-in policy, or the fallback (`default`, itself stored or
built-in). The store holds only what was set, so that every replica sees the same policies.

The policy file is applied at every start: each policy in it replaces what is stored for its
type. A change made over PoolService therefore lasts until the next start with a file that
names the type; types the file does not name keep what ops set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from humanline.domain.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from humanline.domain.routing import (
    BUILT_IN_POLICIES,
    DEFAULT_FALLBACK,
    FALLBACK_TYPE,
    PolicyBook,
    PolicyChoice,
    RoutingPolicy,
)
from humanline.service.dispatcher import Dispatcher
from humanline.service.transitions import retry_conflicts
from humanline.store.port import DuplicateKey, PolicySource, Store, StoredPolicy, UnitOfWork

MAX_STORED_POLICIES = 1000


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    """A policy in force and where it comes from (`source` None: built in)."""

    policy: RoutingPolicy
    source: PolicySource | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def stored(cls, stored: StoredPolicy) -> PolicyInForce:
        return cls(stored.policy, stored.source, stored.created_at, stored.updated_at)


def _checked(policy: RoutingPolicy, prefix: str) -> RoutingPolicy:
    problems = policy.problems()
    if problems:
        raise InvalidArgument([FieldViolation(f"{prefix}.{f}", d) for f, d in problems])
    return policy


def _not_found(interaction_type: str) -> NotFound:
    return NotFound(
        "no routing policy is set or built in for this type (the fallback routes it)",
        reason="POLICY_NOT_FOUND",
        metadata={"interaction_type": interaction_type},
    )


async def in_force(uow: UnitOfWork, interaction_type: str) -> PolicyInForce | None:
    """The policy in force for a type: set for it, else built in; None when neither (the
    fallback routes it). `default` is always in force."""
    stored = await uow.policies.get(interaction_type)
    if stored is not None:
        return PolicyInForce.stored(stored)
    built_in = BUILT_IN_POLICIES.get(interaction_type)
    return None if built_in is None else PolicyInForce(built_in)


class PolicyCache:
    """The routing policies in force as this replica knows them (`domain.routing.PolicyBook`),
    so that routing a new handoff reads none: read whole from the store when first needed,
    and again after a change (`Effects.policies_changed`: here, or elsewhere by its hint),
    when hints may have been lost (`EventHub.reset`), and at least every `max_age` seconds,
    which bounds how stale they can be where hints do not reach (the embedded store has
    none to miss; PostgreSQL with notifications off)."""

    def __init__(self, store: Store, *, max_age: float = 5.0) -> None:
        self._store = store
        self._max_age = max_age
        self._book: PolicyBook | None = None
        self._read_at = 0.0  # loop time of the read the book came from
        self._changes = 0  # how many changes were heard of: a read older than one is stale
        self._reading = asyncio.Lock()  # one read at a time: those waiting take its book

    def changed(self) -> None:
        """The policies changed: the next handoff reads them again."""
        self._changes += 1
        self._book = None

    async def choose(self, interaction_type: str) -> PolicyChoice:
        """The policy that routes a new handoff of `interaction_type`: its own (set, else
        built in), or the fallback."""
        return (await self._current()).choose(interaction_type)

    def _fresh(self) -> PolicyBook | None:
        if self._book is None:
            return None
        age = asyncio.get_running_loop().time() - self._read_at
        return self._book if age < self._max_age else None

    async def _current(self) -> PolicyBook:
        book = self._fresh()
        if book is not None:
            return book
        async with self._reading:
            book = self._fresh()  # read by the one this waited for
            if book is not None:
                return book
            changes, read_at = self._changes, asyncio.get_running_loop().time()
            async with self._store.read(brief=True) as uow:
                stored = await uow.policies.all()
            book = PolicyBook(BUILT_IN_POLICIES.values())
            for each in stored:
                book.put(each.policy)
            if changes == self._changes:  # else a change came meanwhile: read again next time
                self._book, self._read_at = book, read_at
            return book


class RoutingPolicies:
    """Ops' use cases on routing policies."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, file: Sequence[RoutingPolicy] = ()
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._file = tuple(file)

    async def apply_file(self) -> None:
        """Stores the policy file's policies (at start), each replacing its type's."""
        if not self._file:
            return
        async with self._dispatcher.transaction() as (uow, fx):
            for policy in self._file:
                if await uow.policies.update(policy, PolicySource.FILE) is None:
                    await uow.policies.insert(policy, PolicySource.FILE)
            fx.policies_changed()
            fx.log(
                "routing_policies_loaded",
                interaction_types=[p.interaction_type for p in self._file],
            )

    @retry_conflicts
    async def create(self, interaction_type: str, changes: Mapping[str, Any]) -> PolicyInForce:
        """Sets a policy for a type that has none set: the built-in values (the fallback's)
        where `changes` (field -> value) says nothing."""
        base = BUILT_IN_POLICIES.get(interaction_type, DEFAULT_FALLBACK)
        policy = _checked(replace(base, interaction_type=interaction_type, **changes), "policy")
        async with self._dispatcher.transaction() as (uow, fx):
            if len(await uow.policies.all()) >= MAX_STORED_POLICIES:
                raise ResourceExhausted(
                    f"at most {MAX_STORED_POLICIES} routing policies can be set",
                    reason="TOO_MANY_POLICIES",
                )
            try:
                stored = await uow.policies.insert(policy, PolicySource.API)
            except DuplicateKey as exc:
                raise AlreadyExists(
                    "a routing policy is set for this type; update it",
                    reason="POLICY_EXISTS",
                    metadata={"interaction_type": interaction_type},
                ) from exc
            fx.policies_changed()
            fx.log("routing_policy_created", interaction_type=interaction_type)
        return PolicyInForce.stored(stored)

    @retry_conflicts
    async def update(self, interaction_type: str, changes: Mapping[str, Any]) -> PolicyInForce:
        """Changes fields of the policy in force for a type (set or built in)."""
        async with self._dispatcher.transaction() as (uow, fx):
            current = await in_force(uow, interaction_type)
            if current is None:
                raise _not_found(interaction_type)
            policy = _checked(replace(current.policy, **changes), "policy")
            stored = await uow.policies.update(policy, PolicySource.API)
            if stored is None:
                stored = await uow.policies.insert(policy, PolicySource.API)
            fx.policies_changed()
            fx.log(
                "routing_policy_updated",
                interaction_type=interaction_type,
                fields=sorted(changes),
            )
        return PolicyInForce.stored(stored)

    async def get(self, interaction_type: str) -> PolicyInForce:
        """The policy in force for a type; NOT_FOUND when the fallback routes it."""
        async with self._store.read() as uow:
            current = await in_force(uow, interaction_type)
        if current is None:
            raise _not_found(interaction_type)
        return current

    async def list(self) -> list[PolicyInForce]:
        """Every policy in force: the fallback first, then by interaction type."""
        async with self._store.read() as uow:
            stored = {s.policy.interaction_type: s for s in await uow.policies.all()}
        current = {t: PolicyInForce(p) for t, p in BUILT_IN_POLICIES.items()}
        current.update({t: PolicyInForce.stored(s) for t, s in stored.items()})
        fallback = current.pop(FALLBACK_TYPE)
        return [fallback, *(current[t] for t in sorted(current))]

    @retry_conflicts
    async def delete(self, interaction_type: str) -> PolicyInForce:
        """Removes what is set for a type; returns what is in force for it now."""
        async with self._dispatcher.transaction() as (uow, fx):
            if not await uow.policies.delete(interaction_type):
                raise NotFound(
                    "no routing policy is set for this type",
                    reason="POLICY_NOT_FOUND",
                    metadata={"interaction_type": interaction_type},
                )
            now = await in_force(uow, interaction_type)
            if now is None:
                now = await in_force(uow, FALLBACK_TYPE)
                assert now is not None  # the fallback is always built in
            fx.policies_changed()
            fx.log("routing_policy_deleted", interaction_type=interaction_type)
        return now
