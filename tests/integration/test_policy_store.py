"""Routing policies in the store, on both backends: insert, read back unchanged, update,
delete, a duplicate refused; and the document format reads a row that lacks newer fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from humanline.domain.clock import FakeClock
from humanline.domain.model import RiskClass, SkillRequirement
from humanline.domain.routing import DEFAULT_POLICIES, RelaxationStep, RoutingPolicy
from humanline.store.port import DuplicateKey, PolicySource
from humanline.store.sql.policies import policy_document, policy_from_document
from humanline.store.sql.store import SqlStore

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)

WARRANTY = RoutingPolicy(
    "warranty_claim",
    target=200 * S,
    required_skills=(SkillRequirement("warranty", 2), SkillRequirement("orders", 1)),
    min_proficiency=2,
    risk_class=RiskClass.LOW,
    offer_timeout=12.5 * S,
    max_wait=3600 * S,
    relaxation=(RelaxationStep(300 * S, 1), RelaxationStep(600 * S, None, True)),
    quality_ranking=False,
    known_agent_wait=0 * S,
)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(db_url, FakeClock(T0))
    await store.open()
    yield store
    await store.close()


async def test_policies_are_stored_read_back_updated_and_deleted(store: SqlStore) -> None:
    async with store.write() as uow:
        stored = await uow.policies.insert(WARRANTY, PolicySource.FILE)
        assert stored.policy == WARRANTY
    async with store.read() as uow:
        again = await uow.policies.get("warranty_claim")
        assert again is not None
        assert (again.policy, again.source) == (WARRANTY, PolicySource.FILE)
        assert await uow.policies.get("fraud") is None  # built-in: not stored
    with pytest.raises(DuplicateKey):
        async with store.write() as uow:
            await uow.policies.insert(WARRANTY, PolicySource.API)
    faster = RoutingPolicy("warranty_claim", target=60 * S)
    async with store.write() as uow:
        updated = await uow.policies.update(faster, PolicySource.API)
        assert updated is not None
        assert (updated.policy, updated.source) == (faster, PolicySource.API)
        assert (
            await uow.policies.update(RoutingPolicy("nothing", target=S), PolicySource.API) is None
        )
        await uow.policies.insert(DEFAULT_POLICIES[0], PolicySource.API)
    async with store.read() as uow:
        assert [p.policy.interaction_type for p in await uow.policies.all()] == [
            DEFAULT_POLICIES[0].interaction_type,
            "warranty_claim",
        ]
    async with store.write() as uow:
        assert await uow.policies.delete("warranty_claim")
        assert not await uow.policies.delete("warranty_claim")
    async with store.read() as uow:
        assert await uow.policies.get("warranty_claim") is None


def test_the_document_round_trips_and_an_older_one_takes_defaults() -> None:
    for policy in (WARRANTY, *DEFAULT_POLICIES):
        assert policy_from_document(policy.interaction_type, policy_document(policy)) == policy
    old = policy_from_document("x", {"target": 30})
    assert old == RoutingPolicy("x", target=30 * S)
