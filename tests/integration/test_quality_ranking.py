"""Quality-aware ranking over gRPC: among agents of like proficiency, the one with the better
record on the interaction type is offered first, a new agent ranks as the pool's average
(above a proven poor one), a policy can turn the ranking off, and each offer says why its
agent got it. The tracks themselves are held to the domain's arithmetic."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from humanline.domain.quality import Track
from humanline.store.sql import tables
from humanline.v1 import agent_pb2, handoff_pb2
from humanline.v1 import pool_service_pb2 as P
from humanline.v1 import routing_pb2 as R
from tests.conftest import Served
from tests.support.client import AgentDriver, Stubs
from tests.unit.builders import profile

KIND = "warranty_claim"  # no policy of its own: the fallback, which ranks by quality
AVAILABLE = agent_pb2.AGENT_STATUS_AVAILABLE
AWAY = agent_pb2.AGENT_STATUS_AWAY


async def _history(client: Stubs, driver: AgentDriver, agent_id: str, outcomes: list[int]) -> None:
    """The agent, alone available, takes and completes one handoff per outcome."""
    for outcome in outcomes:
        await client.request_handoff(skills={"claims": 2}, interaction_type=KIND)
        interaction = await driver.accept((await driver.offer()).offer_id)
        await client.complete(agent_id, interaction.interaction_id, outcome)


async def _with_records(client: Stubs) -> dict[str, AgentDriver]:
    """Three agents of the same skill: `poor` resolved none of five, then `good` all of five
    (so `poor` has been idle longer), and `new` has done nothing."""
    drivers = {}
    for name in ("poor", "good", "new"):
        await client.create_agent(name, {"claims": 3})
        drivers[name] = client.agent(name)
        await drivers[name].hello()
        await drivers[name].set_status(AWAY)
    await drivers["poor"].set_status(AVAILABLE)
    await _history(client, drivers["poor"], "poor", [handoff_pb2.OUTCOME_UNRESOLVED] * 5)
    await drivers["poor"].set_status(AWAY)
    await drivers["good"].set_status(AVAILABLE)
    await _history(client, drivers["good"], "good", [handoff_pb2.OUTCOME_RESOLVED] * 5)
    return drivers


async def test_the_better_agent_goes_first_and_a_new_one_before_a_poor_one(
    client: Stubs, served: Served
) -> None:
    drivers = await _with_records(client)
    await served.app.quality.refresh_pool()  # the pool: 5 of 10 resolved
    await drivers["poor"].set_status(AVAILABLE)
    first = await client.request_handoff(skills={"claims": 2}, interaction_type=KIND)
    # `poor` has waited longest and would get it by idle time: quality says `good`.
    assert (await drivers["good"].offer()).details.handoff_id == first.handoff_id
    ranking = (await client.get_handoff(first.handoff_id)).offers[0].ranking
    assert ranking.startswith("most proficient eligible agent (claims 3); quality 0.58: ")
    assert "100% resolved of 5 weighted completions" in ranking
    # With `good` busy, the new agent (neutral: the pool's rates) goes before `poor`.
    await drivers["new"].set_status(AVAILABLE)
    second = await client.request_handoff(skills={"claims": 2}, interaction_type=KIND)
    assert (await drivers["new"].offer()).details.handoff_id == second.handoff_id
    assert "new to the type" in (await client.get_handoff(second.handoff_id)).offers[0].ranking
    # And `poor` still gets work when nobody better is free.
    third = await client.request_handoff(skills={"claims": 2}, interaction_type=KIND)
    assert (await drivers["poor"].offer()).details.handoff_id == third.handoff_id
    assert "0% resolved" in (await client.get_handoff(third.handoff_id)).offers[0].ranking


async def test_a_policy_can_turn_quality_ranking_off(client: Stubs) -> None:
    await client.pool.CreateRoutingPolicy(
        P.CreateRoutingPolicyRequest(
            policy=R.RoutingPolicy(interaction_type=KIND, quality_ranking=False)
        )
    )
    drivers = await _with_records(client)
    await drivers["poor"].set_status(AVAILABLE)
    handoff = await client.request_handoff(skills={"claims": 2}, interaction_type=KIND)
    # By idle time alone: `poor`, who waited longest.
    assert (await drivers["poor"].offer()).details.handoff_id == handoff.handoff_id
    assert (await client.get_handoff(handoff.handoff_id)).offers[0].ranking == (
        "most proficient eligible agent (claims 3); its policy does not rank by quality"
    )


async def test_an_agent_coming_free_says_so(client: Stubs) -> None:
    queued = await client.request_handoff(skills={"claims": 2}, interaction_type=KIND)
    await client.create_agent("late", {"claims": 3})
    late = client.agent("late")
    await late.hello()
    assert (await late.offer()).details.handoff_id == queued.handoff_id
    ranking = (await client.get_handoff(queued.handoff_id)).offers[0].ranking
    assert ranking == "the agent came free and this was its work due first"


@pytest.mark.parametrize("outcomes", [[True, False, True], [False] * 4])
async def test_tracks_in_the_store_follow_the_domain(served: Served, outcomes: list[bool]) -> None:
    """The upserts weigh earlier outcomes down as `Track` does; the pool's refresh sums
    the agents' tracks per type."""
    store = served.app.store
    async with store.write() as uow:
        for name in ("a", "b"):
            await uow.agents.insert(name, profile(skills={"claims": 3}), uow.now)
    expected = {"a": Track(), "b": Track()}
    async with store.write() as uow:
        for i, resolved in enumerate(outcomes):
            name = "ab"[i % 2]
            await uow.quality.record_completion(name, KIND, resolved)
            expected[name] = expected[name].completion(resolved)
        await uow.quality.record_rating("a", KIND, 5)
        await uow.quality.record_rating("a", KIND, 1)
        expected["a"] = expected["a"].rating(5).rating(1)
        assert await uow.quality.refresh_pool() == 1
    async with store.read() as uow:
        conn = uow.agents._conn  # type: ignore[attr-defined]
        stored = {
            (agent, kind): Track(*values)
            for agent, kind, *values in await conn.execute(
                sa.select(
                    tables.agent_quality.c.agent_id,
                    tables.agent_quality.c.interaction_type,
                    *(tables.agent_quality.c[n] for n in FIELDS),
                )
            )
        }
        pool = [
            Track(*values)
            for values in await conn.execute(
                sa.select(*(tables.quality_pool.c[n] for n in FIELDS)).where(
                    tables.quality_pool.c.interaction_type == KIND
                )
            )
        ]
    assert stored.keys() == {("a", KIND), ("b", KIND)}
    for name, track in expected.items():
        assert _fields(stored[name, KIND]) == pytest.approx(_fields(track))
    total = [x + y for x, y in zip(_fields(expected["a"]), _fields(expected["b"]), strict=True)]
    assert [_fields(p) for p in pool] == [pytest.approx(total)]


FIELDS = ("completed", "resolved", "rated", "satisfied")


def _fields(track: Track) -> tuple[float, float, float, float]:
    return (track.completed, track.resolved, track.rated, track.satisfied)


async def test_the_reasons_of_an_agent_with_many_long_skills_fit(client: Stubs) -> None:
    """Twenty required skills of 64 characters make a longer reason than the store keeps:
    it is cut short, and the offer is made all the same."""
    skills = {f"{i:02d}" + "s" * 62: 1 for i in range(20)}
    await client.create_agent("polymath", dict.fromkeys(skills, 5))
    polymath = client.agent("polymath")
    await polymath.hello()
    handoff = await client.request_handoff(skills=skills, interaction_type=KIND)
    assert (await polymath.offer()).details.handoff_id == handoff.handoff_id
    ranking = (await client.get_handoff(handoff.handoff_id)).offers[0].ranking
    assert len(ranking) == 500
    assert ranking.startswith("most proficient eligible agent (00ss")
