"""An offer made before the sweep has reviewed what its handoff's wait plan had due (the hold
for the known agent or the experts' reserve just ended) still says why the agent got it: the
offer brings the plan up to date and its routing with it, in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from humanline.domain.clock import FakeClock
from humanline.domain.model import AgentStatus, WaitPlan
from humanline.domain.rules import DispatchPolicy
from humanline.service.events import Effects
from humanline.service.transitions import offer_earliest_work
from humanline.store.sql.store import SqlStore
from tests.unit.builders import handoff, profile

MINUTE = timedelta(minutes=1)
LATELY = timedelta(seconds=5)


async def _offered(
    db_url: str, plan: Callable[[datetime], WaitPlan], known: str | None = None
) -> tuple[str, WaitPlan]:
    """An expert looking for work, and a handoff queued a minute before the store's now (on
    PostgreSQL, the database's clock) with `plan(now)`, which the sweep has not reviewed: the
    handoff's routing and plan once offered to the expert, as stored."""
    store = SqlStore(db_url, FakeClock(datetime.now(UTC)))
    await store.open()
    try:
        async with store.read() as uow:
            now = uow.now
        queued = handoff(created_at=now - MINUTE, skills={"billing": 1})
        queued = replace(
            queued,
            request=replace(queued.request, preferred_agent_id=known),
            routing="policy refunds",
            plan=plan(now),
        )
        async with store.write() as uow:
            await uow.agents.insert("kim", profile(skills={"billing": 3, "fraud": 5}), now)
            await uow.agents.set_presence("kim", status=AgentStatus.AVAILABLE, connected=True)
            await uow.handoffs.insert(queued)
        async with store.write() as uow:
            kim = await uow.agents.get("kim")
            assert kim is not None
            assert await offer_earliest_work(uow, kim, DispatchPolicy(), Effects()) is not None
        async with store.read() as uow:
            stored = await uow.handoffs.get(queued.id)
            assert stored is not None
        return stored.routing, stored.plan
    finally:
        await store.close()


async def test_an_offer_after_the_experts_reserve_says_it_ended(db_url: str) -> None:
    routing, plan = await _offered(
        db_url, lambda now: WaitPlan(expert_level=4, experts_from=now - LATELY)
    )
    assert routing == "policy refunds; experts (best skill 4+) may take it after 55s"
    assert plan.experts_from is None


async def test_an_offer_after_the_known_agent_wait_says_it_ended(db_url: str) -> None:
    routing, plan = await _offered(
        db_url,
        lambda now: WaitPlan(preferred_agent_id="lee", preferred_until=now - LATELY),
        known="lee",
    )
    assert routing == "policy refunds; stopped waiting for known agent lee"
    assert plan.preferred_until is None
