"""PoolService: agents' profiles, listing with filters and pages, deletion, the pool status."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from google.protobuf import field_mask_pb2
from sqlalchemy.ext.asyncio import create_async_engine

from humanline.v1 import agent_pb2, handoff_pb2, pool_service_pb2
from tests.support.client import Stubs


async def test_create_get_update_delete(client: Stubs) -> None:
    created = await client.create_agent("ann", {"billing": 4}, languages=("EN", "de-CH"))
    assert created.state == agent_pb2.AGENT_STATE_OFFLINE
    assert list(created.languages) == ["de-ch", "en"]
    fetched = await client.get_agent("ann")
    assert fetched == created

    updated = (
        await client.pool.UpdateAgent(
            pool_service_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(
                    agent_id="ann",
                    display_name="Ann B.",
                    skills=[agent_pb2.AgentSkill(skill="fraud", proficiency=5)],
                    capacity=4,
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["skills", "capacity"]),
            )
        )
    ).agent
    assert updated.display_name == "Ann"  # not in the mask: unchanged
    assert [(s.skill, s.proficiency) for s in updated.skills] == [("fraud", 5)]
    assert updated.capacity == 4
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()

    generated = (
        await client.pool.CreateAgent(
            pool_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(display_name="Anon"))
        )
    ).agent
    assert generated.agent_id
    assert generated.capacity == 1

    await client.pool.DeleteAgent(pool_service_pb2.DeleteAgentRequest(agent_id="ann"))
    listed = await client.pool.ListAgents(pool_service_pb2.ListAgentsRequest())
    assert [a.agent_id for a in listed.agents] == [generated.agent_id]


async def test_new_skills_make_a_waiting_handoff_reachable(client: Stubs) -> None:
    await client.create_agent("ann", {"billing": 2})
    ann = client.agent("ann")
    await ann.hello()
    handoff = await client.request_handoff(skills={"fraud": 4})
    assert await ann.quiet(0.3) == []
    await client.pool.UpdateAgent(
        pool_service_pb2.UpdateAgentRequest(
            agent=agent_pb2.Agent(
                agent_id="ann", skills=[agent_pb2.AgentSkill(skill="fraud", proficiency=4)]
            )
        )
    )
    assert (await ann.offer()).details.handoff_id == handoff.handoff_id


async def test_list_agents_pages_and_filters(client: Stubs) -> None:
    for i in range(7):
        await client.create_agent(f"agent-{i}", {"billing" if i % 2 else "orders": 3})
    online = client.agent("agent-3")
    await online.hello()

    seen, token = [], ""
    while True:
        page = await client.pool.ListAgents(
            pool_service_pb2.ListAgentsRequest(page_size=3, page_token=token)
        )
        seen += [a.agent_id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(f"agent-{i}" for i in range(7))

    billing = await client.pool.ListAgents(pool_service_pb2.ListAgentsRequest(skill="billing"))
    assert [a.agent_id for a in billing.agents] == ["agent-1", "agent-3", "agent-5"]
    available = await client.pool.ListAgents(
        pool_service_pb2.ListAgentsRequest(state=agent_pb2.AGENT_STATE_AVAILABLE)
    )
    assert [a.agent_id for a in available.agents] == ["agent-3"]
    offline_billing = await client.pool.ListAgents(
        pool_service_pb2.ListAgentsRequest(state=agent_pb2.AGENT_STATE_OFFLINE, skill="billing")
    )
    assert [a.agent_id for a in offline_billing.agents] == ["agent-1", "agent-5"]


async def test_pool_status_counts(client: Stubs) -> None:
    await client.create_agent("ann", {"billing": 4}, languages=("en",), capacity=2)
    await client.create_agent("bob", {"billing": 3, "fraud": 2}, languages=("en", "de"))
    await client.create_agent("cid", {"fraud": 5}, languages=("de",))
    await client.create_agent("dee", {"orders": 1})
    ann, bob, cid = client.agent("ann"), client.agent("bob"), client.agent("cid")
    await ann.hello()
    await bob.hello()
    await cid.hello(status=agent_pb2.AGENT_STATUS_AWAY)
    # One billing handoff goes to ann (most proficient) and stays offered; two wait for
    # an orders agent who is offline.
    await client.request_handoff(skills={"billing": 1}, urgency=handoff_pb2.URGENCY_HIGH)
    await ann.offer()
    for _ in range(2):
        await client.request_handoff(
            interaction_type="refund", skills={"orders": 1}, urgency=handoff_pb2.URGENCY_LOW
        )

    status = await client.pool_status()
    states = {c.state: c.count for c in status.agents_by_state}
    assert states[agent_pb2.AGENT_STATE_AVAILABLE] == 2  # ann (1 of 2 slots used), bob
    assert states[agent_pb2.AGENT_STATE_AWAY] == 1
    assert states[agent_pb2.AGENT_STATE_OFFLINE] == 1
    assert states[agent_pb2.AGENT_STATE_BUSY] == 0
    skills = {c.key: (c.available_agents, c.free_capacity) for c in status.skills}
    assert skills == {"billing": (2, 2), "fraud": (1, 1)}  # cid is away: not counted
    languages = {c.key: (c.available_agents, c.free_capacity) for c in status.languages}
    assert languages == {"en": (2, 2), "de": (1, 1)}
    urgency = {c.urgency: c.count for c in status.queue_by_urgency}
    assert urgency[handoff_pb2.URGENCY_HIGH] == 1
    assert urgency[handoff_pb2.URGENCY_LOW] == 2
    assert urgency[handoff_pb2.URGENCY_CRITICAL] == 0
    types = {c.interaction_type: c.count for c in status.queue_by_interaction_type}
    assert types == {"general_question": 1, "refund": 2}
    assert status.oldest_wait.ToTimedelta().total_seconds() >= 0


async def test_pool_status_counts_agree_while_agents_change(db_url: str, client: Stubs) -> None:
    """Every count of one GetPoolStatus is read at one moment: with agents changing state
    between its statements, the pool's counts and the per-skill counts still agree."""
    names = [f"a{i}" for i in range(8)]
    for name in names:
        await client.create_agent(name, {"x": 1})
    engine = create_async_engine(db_url)
    stop = asyncio.Event()

    async def flip() -> None:  # OFFLINE <-> RECONNECTING, one agent per transaction
        n = 0
        while not stop.is_set():
            status = "AVAILABLE" if n // len(names) % 2 == 0 else "OFFLINE"
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE agents SET status = :s WHERE id = :id"),
                    {"s": status, "id": names[n % len(names)]},
                )
            n += 1
            await asyncio.sleep(0)

    flipper = asyncio.create_task(flip())
    try:
        for _ in range(150):
            status = await client.pool_status()
            states = {c.state: c.count for c in status.agents_by_state}
            (skill,) = status.agents_by_skill
            assert {c.state: c.count for c in skill.agents_by_state} == states
            assert sum(states.values()) == len(names)
    finally:
        stop.set()
        await flipper
        await engine.dispose()
