"""Routing over real gRPC: the queue's order, who gets the work, and the watch stream."""

from __future__ import annotations

import asyncio
import uuid

from humanline.domain.model import (
    Handoff,
    HandoffReason,
    HandoffRequest,
    HandoffState,
    SkillRequirement,
    Urgency,
)
from humanline.v1 import handoff_pb2, handoff_service_pb2
from tests.conftest import Served
from tests.support.client import Stubs

U = handoff_pb2


async def test_a_freed_agent_gets_the_earliest_deadline_first(client: Stubs) -> None:
    # Queue while nobody is online: LOW first, then NORMAL, then CRITICAL, then HIGH.
    low = await client.request_handoff(urgency=U.URGENCY_LOW)
    normal = await client.request_handoff(urgency=U.URGENCY_NORMAL)
    critical = await client.request_handoff(urgency=U.URGENCY_CRITICAL)
    high = await client.request_handoff(urgency=U.URGENCY_HIGH)
    positions = {
        h.handoff_id: (await client.get_handoff(h.handoff_id)).queue_position
        for h in (low, normal, critical, high)
    }
    assert positions == {
        critical.handoff_id: 1,
        high.handoff_id: 2,
        normal.handoff_id: 3,
        low.handoff_id: 4,
    }

    await client.create_agent("ann", {"general": 3})
    ann = client.agent("ann")
    await ann.hello()
    served_order = []
    for _ in range(4):  # the backlog drains by itself, one freed slot after another
        offer = await ann.offer()
        served_order.append(offer.details.handoff_id)
        await client.complete("ann", (await ann.accept(offer.offer_id)).interaction_id)
    assert served_order == [h.handoff_id for h in (critical, high, normal, low)]


async def test_the_most_proficient_free_agent_gets_it(client: Stubs) -> None:
    await client.create_agent("novice", {"billing": 2, "refunds": 5})
    await client.create_agent("expert", {"billing": 5, "refunds": 4})
    await client.create_agent("mid", {"billing": 4, "refunds": 4})
    drivers = {name: client.agent(name) for name in ("novice", "expert", "mid")}
    for driver in drivers.values():
        await driver.hello()
    await client.request_handoff(skills={"billing": 2, "refunds": 3})
    offer = await drivers["expert"].offer()  # 5+4 beats 4+4 and 2+5
    assert offer.details.required_skills[0].skill in {"billing", "refunds"}
    for name in ("novice", "mid"):
        assert await drivers[name].quiet(0.2) == []


async def test_among_equals_the_longest_idle_agent_gets_it(client: Stubs) -> None:
    for name in ("a1", "a2"):
        await client.create_agent(name, {"general": 3})
    a1, a2 = client.agent("a1"), client.agent("a2")
    await a1.hello()
    await a2.hello()
    # Both never assigned: ties go by id, so a1 first. After that a2 has been idle longer.
    await client.request_handoff()
    first = await a1.offer()
    await client.complete("a1", (await a1.accept(first.offer_id)).interaction_id)
    await client.request_handoff()
    second = await a2.offer()
    await client.complete("a2", (await a2.accept(second.offer_id)).interaction_id)
    await client.request_handoff()
    assert (await a1.offer()).offer_id  # a1 was assigned longer ago than a2
    assert await a2.quiet(0.2) == []


async def test_skills_and_language_decide_eligibility(client: Stubs) -> None:
    await client.create_agent("en-basic", {"billing": 2}, languages=("en",))
    await client.create_agent("de-expert", {"billing": 5}, languages=("de",))
    en, de = client.agent("en-basic"), client.agent("de-expert")
    await en.hello()
    await de.hello()
    german = await client.request_handoff(skills={"billing": 1}, language="DE")
    assert (await de.offer()).details.handoff_id == german.handoff_id
    hard = await client.request_handoff(skills={"billing": 3}, language="en")
    assert await en.quiet(0.3) == []  # proficiency 2 < 3
    assert (await client.get_handoff(hard.handoff_id)).state == U.HANDOFF_STATE_QUEUED


async def test_watch_follows_every_state_and_the_queue(client: Stubs) -> None:
    first = await client.request_handoff(urgency=U.URGENCY_CRITICAL)
    second = await client.request_handoff(urgency=U.URGENCY_LOW)
    stream = client.handoffs.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=second.handoff_id)
    )
    updates: list[handoff_pb2.Handoff] = []

    async def follow() -> None:
        async for message in stream:
            updates.append(message.handoff)

    following = asyncio.create_task(follow())
    async with asyncio.timeout(10):
        while not updates:
            await asyncio.sleep(0.02)
        assert updates[0].state == U.HANDOFF_STATE_QUEUED
        assert updates[0].queue_position == 2
        await client.cancel_handoff(first.handoff_id)  # the queue moves: now first in line
        while updates[-1].queue_position != 1:
            await asyncio.sleep(0.02)

        await client.create_agent("ann", {"general": 3}, display_name="Ann")
        ann = client.agent("ann")
        await ann.hello()
        interaction = await ann.accept((await ann.offer()).offer_id)
        await client.complete("ann", interaction.interaction_id)
        await following  # the stream ends after the terminal state

    states = [u.state for u in updates]
    # Every state change is delivered, in order (queue-only updates repeat QUEUED).
    distinct = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert distinct == [
        U.HANDOFF_STATE_QUEUED,
        U.HANDOFF_STATE_OFFERED,
        U.HANDOFF_STATE_ASSIGNED,
        U.HANDOFF_STATE_COMPLETED,
    ]
    assigned = next(u for u in updates if u.state == U.HANDOFF_STATE_ASSIGNED)
    assert assigned.assigned_agent.display_name == "Ann"
    assert assigned.queue_position == 0
    # No eligible agent was online while it queued: no honest estimate, so none is given.
    queued = [u for u in updates if u.state == U.HANDOFF_STATE_QUEUED]
    assert not any(u.HasField("estimated_wait") for u in queued)
    offered = next(u for u in updates if u.state == U.HANDOFF_STATE_OFFERED)
    assert offered.estimated_wait.ToTimedelta().total_seconds() == 0


async def _lost_wake_up(served: Served, *skills: SkillRequirement) -> str:
    """A queued handoff written to the store without telling the dispatcher, as a lost
    wake-up leaves one; its id."""
    request = HandoffRequest(
        request_id=str(uuid.uuid4()),
        conversation_id="c",
        customer_id="u",
        interaction_type="order_lookup",
        required_skills=skills,
        language=None,
        urgency=Urgency.NORMAL,
        summary="",
        reason=HandoffReason.UNSPECIFIED,
    )
    async with served.app.store.write() as uow:
        handoff = Handoff(
            id=str(uuid.uuid4()),
            request=request,
            fingerprint=request.fingerprint(),
            state=HandoffState.QUEUED,
            created_at=uow.now,
            deadline=uow.now,
            requeue_count=0,
            agent_id=None,
            offer_id=None,
            assigned_at=None,
            ended_at=None,
            completion=None,
        )
        await uow.handoffs.insert(handoff)
    return handoff.id


async def test_the_fallback_sweep_recovers_a_lost_wake_up(client: Stubs, served: Served) -> None:
    await client.create_agent("ann", {"general": 3})
    ann = client.agent("ann")
    await ann.hello()
    handoff_id = await _lost_wake_up(served)
    # The sweep (every 0.25 s here, at most 1 s in production) finds it anyway.
    offer = await ann.offer(timeout=3)
    assert offer.details.handoff_id == handoff_id


async def test_the_fallback_sweep_reaches_every_ready_agent_page_by_page(
    client: Stubs, served: Served
) -> None:
    """The sweep nudges a page of ready agents at a time; with pages of one, the eligible
    agent is third by id, after two ready agents who cannot take the handoff."""
    served.app.dispatcher._batch = 1  # what 100 is to a pool of thousands
    drivers = {}
    for agent_id, skill in (("a1", "other"), ("a2", "other"), ("zed", "general")):
        await client.create_agent(agent_id, {skill: 3})
        drivers[agent_id] = client.agent(agent_id)
        await drivers[agent_id].hello()
    handoff_id = await _lost_wake_up(served, SkillRequirement("general", 1))
    # Sweeps every 0.25 s here: a1's page, a2's, then zed's.
    offer = await drivers["zed"].offer(timeout=5)
    assert offer.details.handoff_id == handoff_id
