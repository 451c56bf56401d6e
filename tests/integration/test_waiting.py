"""What happens while a handoff waits, over gRPC: its routing policy's relaxation steps widen
who may take it (each shown in WatchHandoff), it waits a while for the customer's known agent
(only while that agent is online), it keeps experts back for a while, it expires at its
maximum wait with a reason, and its offers wait as long as its policy says. Policies with
sub-second times keep the tests quick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2

from humanline.v1 import (
    agent_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
    routing_pb2,
)
from tests.support.client import AgentDriver, Stubs, error_details, handoff_request

H = handoff_pb2
R = routing_pb2


def _span(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


async def _policy(client: Stubs, **fields: object) -> None:
    await client.pool.CreateRoutingPolicy(
        pool_service_pb2.CreateRoutingPolicyRequest(policy=R.RoutingPolicy(**fields))  # type: ignore[arg-type]
    )


async def _request(
    client: Stubs,
    *,
    skills: list[H.SkillRequirement] | None = None,
    preferred: str = "",
    **fields: object,
) -> H.Handoff:
    request = handoff_request(**fields)  # type: ignore[arg-type]
    if skills is not None:
        request.required_skills.extend(skills)
    request.preferred_agent_id = preferred
    return (await client.handoffs.RequestHandoff(request)).handoff


async def _watch(client: Stubs, handoff_id: str) -> AsyncIterator[H.Handoff]:
    call = client.handoffs.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=handoff_id)
    )
    async for message in call:
        yield message.handoff


async def _until_state(
    client: Stubs, handoff_id: str, state: int, timeout: float = 10
) -> H.Handoff:
    async with asyncio.timeout(timeout):
        async for handoff in _watch(client, handoff_id):
            if handoff.state == state:
                return handoff
    raise AssertionError(f"the watch ended before state {state}")


def _skills(handoff: H.Handoff) -> list[tuple[str, int]]:
    return [(s.skill, s.min_proficiency) for s in handoff.required_skills]


async def _busy(client: Stubs, driver: AgentDriver, skill: str) -> str:
    """Makes a connected agent busy with a handoff of its own; returns the interaction id."""
    handoff = await client.request_handoff(skills={skill: 1})
    offer = await driver.offer()
    assert offer.details.handoff_id == handoff.handoff_id
    return (await driver.accept(offer.offer_id)).interaction_id


# --- relaxation -------------------------------------------------------------------------------


async def test_relaxation_widens_the_pool_step_by_step_and_the_watch_shows_each(
    client: Stubs,
) -> None:
    await _policy(
        client,
        interaction_type="tax_question",
        target=_span(0.5),
        min_proficiency=4,
        max_wait=_span(30),
        relaxation=[
            R.RelaxationStep(after=_span(0.6), drop_optional=True),
            R.RelaxationStep(after=_span(1.2), min_proficiency=2),
        ],
    )
    await client.create_agent("junior", {"tax": 2})
    junior = client.agent("junior")
    await junior.hello()
    handoff = await _request(
        client,
        interaction_type="tax_question",
        skills=[
            H.SkillRequirement(skill="tax", min_proficiency=3),
            H.SkillRequirement(skill="german", min_proficiency=2, optional=True),
        ],
    )
    assert _skills(handoff) == [("tax", 4), ("german", 4)]
    assert [s.optional for s in handoff.required_skills] == [False, True]
    assert handoff.relaxation_step == 0
    waited = handoff.expire_time.ToDatetime() - handoff.create_time.ToDatetime()
    assert waited.total_seconds() == pytest.approx(30)

    seen: list[tuple[int, list[tuple[str, int]], int]] = []
    async with asyncio.timeout(10):
        async for update in _watch(client, handoff.handoff_id):
            seen.append((update.relaxation_step, _skills(update), update.state))
            if update.state != H.HANDOFF_STATE_QUEUED:
                break
    steps = [(step, skills) for step, skills, state in seen if state == H.HANDOFF_STATE_QUEUED]
    assert steps[0] == (0, [("tax", 4), ("german", 4)])
    assert (1, [("tax", 4)]) in steps  # the optional skill dropped
    assert steps[-1] == (2, [("tax", 2)])
    assert seen[-1][2] == H.HANDOFF_STATE_OFFERED  # and the junior agent is offered it
    offer = await junior.offer()
    assert offer.details.handoff_id == handoff.handoff_id
    got = await client.get_handoff(handoff.handoff_id)
    assert "relaxed after 1s (step 1): tax 4+" in got.routing
    assert "(step 2): tax 2+" in got.routing


# --- maximum wait -----------------------------------------------------------------------------


async def test_a_handoff_nobody_can_take_expires_at_its_maximum_wait(client: Stubs) -> None:
    await _policy(client, interaction_type="callback_ok", target=_span(0.3), max_wait=_span(0.8))
    handoff = await _request(
        client,
        interaction_type="callback_ok",
        skills=[H.SkillRequirement(skill="fraud", min_proficiency=4)],
    )
    expired = await _until_state(client, handoff.handoff_id, H.HANDOFF_STATE_EXPIRED)
    assert expired.end_reason.startswith("maximum wait over after ")
    assert expired.end_reason.endswith(": no agent with fraud 4+ was online")
    assert expired.HasField("end_time")
    waited = expired.end_time.ToDatetime() - expired.create_time.ToDatetime()
    assert waited.total_seconds() >= 0.8
    assert expired.queue_position == 0
    # Over: it cannot be cancelled, and nothing is offered later.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.cancel_handoff(handoff.handoff_id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused.value)["reason"] == "HANDOFF_NOT_CANCELLABLE"
    await client.create_agent("latecomer", {"fraud": 5})
    latecomer = client.agent("latecomer")
    await latecomer.hello()
    assert [m for m in await latecomer.quiet(0.5) if m.HasField("offer")] == []


async def test_the_expiry_reason_tells_busy_agents_from_none_online(client: Stubs) -> None:
    await _policy(client, interaction_type="busy_day", target=_span(0.3), max_wait=_span(0.8))
    await client.create_agent("solo", {"fraud": 4})
    solo = client.agent("solo")
    await solo.hello()
    await _busy(client, solo, "fraud")
    handoff = await _request(
        client,
        interaction_type="busy_day",
        skills=[H.SkillRequirement(skill="fraud", min_proficiency=4)],
    )
    expired = await _until_state(client, handoff.handoff_id, H.HANDOFF_STATE_EXPIRED)
    assert expired.end_reason.endswith(": 1 eligible agent was online, none free")


# --- the known agent --------------------------------------------------------------------------


async def _known_agent_scene(client: Stubs, wait: float) -> tuple[AgentDriver, AgentDriver, str]:
    """kim (the customer's agent, busy) and lee (free), both able to take `repeat` handoffs
    whose policy waits `wait` seconds for a known agent."""
    await _policy(
        client,
        interaction_type="repeat",
        target=_span(0.3),
        max_wait=_span(30),
        known_agent_wait=_span(wait),
    )
    await client.create_agent("kim", {"returns": 3})
    await client.create_agent("lee", {"returns": 3})
    kim, lee = client.agent("kim"), client.agent("lee")
    await kim.hello()
    interaction = await _busy(client, kim, "returns")
    await lee.hello()
    return kim, lee, interaction


async def test_the_known_agent_gets_the_handoff_when_free_within_the_wait(client: Stubs) -> None:
    kim, lee, interaction = await _known_agent_scene(client, wait=10)
    handoff = await _request(client, interaction_type="repeat", preferred="kim")
    assert handoff.preferred_agent_id == "kim"
    assert handoff.HasField("preferred_agent_wait_end_time")
    assert handoff.routing.endswith("; waits up to 10s for known agent kim")
    # lee is free and able, but the customer's own agent is waited for.
    assert [m for m in await lee.quiet(0.5) if m.HasField("offer")] == []
    await client.complete("kim", interaction)
    offer = await kim.offer()
    assert offer.details.handoff_id == handoff.handoff_id


async def test_after_the_known_agent_wait_anyone_eligible_gets_it(client: Stubs) -> None:
    _, lee, _ = await _known_agent_scene(client, wait=0.6)
    handoff = await _request(client, interaction_type="repeat", preferred="kim")
    offer = await lee.offer(timeout=5)
    assert offer.details.handoff_id == handoff.handoff_id
    waited = offer.offer_time.ToDatetime() - handoff.create_time.ToDatetime()
    assert waited.total_seconds() >= 0.6
    # Whichever came first, the sweep's review or lee looking for work, the routing says why
    # lee has it.
    got = await client.get_handoff(handoff.handoff_id)
    assert got.routing.endswith("; stopped waiting for known agent kim")
    assert not got.HasField("preferred_agent_wait_end_time")


async def test_the_known_agent_going_away_ends_the_wait_at_once(client: Stubs) -> None:
    kim, lee, _ = await _known_agent_scene(client, wait=30)
    handoff = await _request(client, interaction_type="repeat", preferred="kim")
    assert [m for m in await lee.quiet(0.3) if m.HasField("offer")] == []
    await kim.set_status(agent_pb2.AGENT_STATUS_AWAY)
    offer = await lee.offer(timeout=3)  # well before the 30 s wait
    assert offer.details.handoff_id == handoff.handoff_id


async def test_a_known_agent_offline_is_not_waited_for(client: Stubs) -> None:
    await _policy(client, interaction_type="repeat", target=_span(0.3), known_agent_wait=_span(30))
    await client.create_agent("kim", {"returns": 3})
    await client.create_agent("lee", {"returns": 3})
    lee = client.agent("lee")
    await lee.hello()
    handoff = await _request(client, interaction_type="repeat", preferred="kim")
    assert handoff.routing.endswith("; known agent kim not waited for: offline")
    assert not handoff.HasField("preferred_agent_wait_end_time")
    offer = await lee.offer(timeout=3)
    assert offer.details.handoff_id == handoff.handoff_id


async def test_the_known_agent_declining_ends_the_wait(client: Stubs) -> None:
    await _policy(client, interaction_type="repeat", target=_span(0.3), known_agent_wait=_span(30))
    await client.create_agent("kim", {"returns": 3})
    await client.create_agent("lee", {"returns": 3})
    kim, lee = client.agent("kim"), client.agent("lee")
    await kim.hello()
    await lee.hello()
    handoff = await _request(client, interaction_type="repeat", preferred="kim")
    first = await kim.offer()
    assert first.details.handoff_id == handoff.handoff_id
    await kim.decline(first.offer_id)
    offer = await lee.offer(timeout=3)
    assert offer.details.handoff_id == handoff.handoff_id


async def test_a_bad_preferred_agent_id_is_refused(client: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _request(client, preferred="Not An Id!")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "preferred_agent_id" in error_details(refused.value)["violations"]


# --- experts kept back ------------------------------------------------------------------------


async def _reserving_policy(client: Stubs, delay: float) -> None:
    await _policy(
        client,
        interaction_type="routine_ask",
        target=_span(0.3),
        max_wait=_span(60),
        expert_level=4,
        expert_delay=_span(delay),
    )


async def test_an_expert_takes_routine_work_only_once_it_has_waited(client: Stubs) -> None:
    await _reserving_policy(client, delay=2)
    await client.create_agent("novice", {"general": 2})
    await client.create_agent("expert", {"general": 3, "fraud": 5})
    novice, expert = client.agent("novice"), client.agent("expert")
    await novice.hello()
    await _busy(client, novice, "general")  # before the expert is online to take it
    await expert.hello()
    handoff = await _request(
        client,
        interaction_type="routine_ask",
        skills=[H.SkillRequirement(skill="general", min_proficiency=1)],
    )
    assert handoff.state == H.HANDOFF_STATE_QUEUED  # the expert is free, and kept back
    assert handoff.routing.endswith("; experts (best skill 4+) only after 2s")
    assert [m for m in await expert.quiet(1.2) if m.HasField("offer")] == []
    offer = await expert.offer(timeout=5)
    assert offer.details.handoff_id == handoff.handoff_id
    waited = offer.offer_time.ToDatetime() - handoff.create_time.ToDatetime()
    assert waited.total_seconds() >= 2
    got = await client.get_handoff(handoff.handoff_id)
    assert got.routing.endswith("; experts (best skill 4+) may take it after 2s")


async def test_an_expert_freed_leaves_routine_work_to_others(client: Stubs) -> None:
    await _reserving_policy(client, delay=30)
    await client.create_agent("expert", {"general": 3, "fraud": 5})
    await client.create_agent("novice", {"general": 2})
    expert, novice = client.agent("expert"), client.agent("novice")
    await novice.hello()
    novice_work = await _busy(client, novice, "general")
    await expert.hello()
    expert_work = await _busy(client, expert, "general")
    handoff = await _request(
        client,
        interaction_type="routine_ask",
        skills=[H.SkillRequirement(skill="general", min_proficiency=1)],
    )
    assert handoff.routing.endswith("; experts (best skill 4+) only after 30s")
    await client.complete("expert", expert_work)  # free again, looking for work
    assert [m for m in await expert.quiet(0.5) if m.HasField("offer")] == []
    await client.complete("novice", novice_work)
    offer = await novice.offer()
    assert offer.details.handoff_id == handoff.handoff_id


async def test_experts_are_not_kept_back_when_no_one_else_is_online(client: Stubs) -> None:
    await _reserving_policy(client, delay=30)
    await client.create_agent("expert", {"general": 3, "fraud": 5})
    await client.create_agent("novice", {"general": 2})  # offline
    expert = client.agent("expert")
    await expert.hello()
    handoff = await _request(
        client,
        interaction_type="routine_ask",
        skills=[H.SkillRequirement(skill="general", min_proficiency=1)],
    )
    assert handoff.routing.endswith(
        "; experts (best skill 4+) not kept back: no other agent online"
    )
    offer = await expert.offer()
    assert offer.details.handoff_id == handoff.handoff_id


# --- offer timeout ----------------------------------------------------------------------------


async def test_offers_wait_as_long_as_the_types_policy_says(client: Stubs) -> None:
    # The server's offer timeout in these tests is 1 s; this type's policy says 3 s.
    await _policy(client, interaction_type="slow_read", target=_span(1), offer_timeout=_span(3))
    await client.create_agent("ann", {"general": 3})
    ann = client.agent("ann")
    await ann.hello()
    await _request(client, interaction_type="slow_read")
    offer = await ann.offer()
    allowed = offer.expire_time.ToDatetime() - offer.offer_time.ToDatetime()
    assert allowed.total_seconds() == pytest.approx(3, abs=0.01)
    await _request(client)  # the fallback policy leaves it to the server
    await ann.decline(offer.offer_id)
    second = await ann.offer()
    allowed = second.expire_time.ToDatetime() - second.offer_time.ToDatetime()
    assert allowed.total_seconds() == pytest.approx(1, abs=0.01)


# --- wait estimates ---------------------------------------------------------------------------


async def test_the_estimate_tracks_the_actual_wait_on_a_steady_queue(client: Stubs) -> None:
    """One agent handling one customer at a time, for a steady 0.8 s each: a handoff queued
    behind others is told about how long it will wait, from the queue ahead of it, the
    eligible capacity and the type's recent handle time."""
    handle = 0.8
    await client.create_agent("ann", {"steady": 3})
    ann = client.agent("ann")
    await ann.hello()

    async def serve(count: int) -> None:
        for _ in range(count):
            offer = await ann.offer(timeout=10)
            interaction = await ann.accept(offer.offer_id)
            await asyncio.sleep(handle)
            await client.complete("ann", interaction.interaction_id)

    def request() -> Awaitable[H.Handoff]:
        return client.request_handoff(interaction_type="steady_work", skills={"steady": 1})

    for _ in range(3):  # the type's handle time, learned from completions
        await request()
        await serve(1)
    first = await request()
    assert first.state == H.HANDOFF_STATE_OFFERED
    assert first.estimated_wait.ToTimedelta() == timedelta(0)
    behind = [await request() for _ in range(3)]
    await serve(4)
    for k, handoff in enumerate(behind):
        estimated = handoff.estimated_wait.ToTimedelta().total_seconds()
        assert estimated == pytest.approx(handle * (k + 1), abs=0.15)  # k queued ahead
        done = await client.get_handoff(handoff.handoff_id)
        actual = (done.assign_time.ToDatetime() - done.create_time.ToDatetime()).total_seconds()
        assert abs(estimated - actual) < 0.4, (k, estimated, actual)
