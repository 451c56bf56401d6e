"""The whole path of one handoff against the real `humanline serve` process.

Ops create agents, an agent logs in over Connect, a bot requests a human, the agent is offered
the interaction, accepts and completes it; the bot follows it with GetHandoff and WatchHandoff
and ops with GetPoolStatus. Bad input is refused with INVALID_ARGUMENT and field violations,
and changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import grpc
import pytest

from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
)
from tests.e2e.helpers import (
    READ_TIMEOUT,
    agents,
    eventually,
    failure,
    next_of,
    pool_counts,
    queue,
    refused,
)
from tests.e2e.process import ServerProcess
from tests.support.client import ConnectRequest, Stubs, handoff_request

pytestmark = pytest.mark.e2e

H = handoff_pb2
SUMMARY = "Customer was charged twice for order 1234 and is upset."


async def read_to_end(call: grpc.aio.UnaryStreamCall) -> list[handoff_pb2.Handoff]:
    """Every update left on a WatchHandoff stream until it ends."""
    updates = []
    while (message := await call.read()) is not grpc.aio.EOF:
        updates.append(message.handoff)
    return updates


def distinct_states(updates: list[handoff_pb2.Handoff]) -> list[str]:
    states: list[str] = []
    for update in updates:
        name = H.HandoffState.Name(update.state)
        if not states or states[-1] != name:
            states.append(name)
    return states


async def test_handoff_lifecycle_from_bot_to_agent_and_back(
    server: ServerProcess, client: Stubs
) -> None:
    assert f"serving on {server.target}" in server.stderr()

    # Ops create two agents; nobody is logged in yet.
    alice = await client.create_agent("alice", {"billing": 4}, display_name="Alice")
    assert alice.state == agent_pb2.AGENT_STATE_OFFLINE
    await client.create_agent("bob", {"fraud": 5}, languages=("en", "de"), capacity=2)
    pool = pool_counts(await client.pool_status())
    assert pool.agents == agents(OFFLINE=2)
    assert pool.queue_by_urgency == queue()
    assert (pool.skills, pool.languages, pool.queue_by_type) == ({}, {}, {})

    # Alice logs in away, so the handoff stays queued until she is ready.
    agent = client.agent("alice")
    welcome = await agent.hello(agent_pb2.AGENT_STATUS_AWAY)
    assert welcome.agent.state == agent_pb2.AGENT_STATE_AWAY
    assert welcome.resume_token
    assert not welcome.resumed
    assert welcome.heartbeat_interval.ToTimedelta() == timedelta(seconds=20)
    assert welcome.grace_period.ToTimedelta() == timedelta(seconds=10)

    handoff = await client.request_handoff(
        conversation_id="conv-42",
        customer_id="cust-7",
        interaction_type="billing_dispute",
        skills={"billing": 3},
        language="en",
        urgency=H.URGENCY_HIGH,
        summary=SUMMARY,
    )
    assert handoff.state == H.HANDOFF_STATE_QUEUED
    assert handoff.queue_position == 1
    assert not handoff.HasField("estimated_wait")  # nobody eligible is online: no estimate
    # The queue deadline is the enqueue time plus the type's target, scaled by urgency:
    # billing_dispute's 45 s, halved for HIGH (the default targets: 60 s of NORMAL's 120 s).
    target = handoff.target_time.ToDatetime() - handoff.create_time.ToDatetime()
    assert target == timedelta(seconds=22.5)
    assert handoff.routing.startswith("policy billing_dispute; urgency HIGH: as asked")

    # The bot watches: first the current state, then every change until the end.
    watch = client.handoffs.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=handoff.handoff_id)
    )
    first = await asyncio.wait_for(watch.read(), READ_TIMEOUT)
    assert first.handoff.state == H.HANDOFF_STATE_QUEUED
    assert first.handoff.queue_position == 1
    watched = asyncio.create_task(read_to_end(watch))

    pool = pool_counts(await client.pool_status())
    assert pool.agents == agents(OFFLINE=1, AWAY=1)
    assert pool.queue_by_urgency == queue(HIGH=1)
    assert pool.queue_by_type == {"billing_dispute": 1}
    assert pool.skills == {}  # nobody available
    assert pool.oldest_wait >= 0

    # Alice becomes available: the handoff is offered to her at once.
    changed = await agent.set_status(agent_pb2.AGENT_STATUS_AVAILABLE)
    assert changed.status_changed.status == agent_pb2.AGENT_STATUS_AVAILABLE
    assert changed.status_changed.reason == agent_service_pb2.STATUS_CHANGE_REASON_AGENT_REQUEST
    offer = await next_of(agent, "offer")
    details = offer.details
    assert details.handoff_id == handoff.handoff_id
    assert (details.conversation_id, details.customer_id) == ("conv-42", "cust-7")
    assert details.interaction_type == "billing_dispute"
    assert details.urgency == H.URGENCY_HIGH
    assert details.summary == SUMMARY
    assert offer.expire_time.ToDatetime() - offer.offer_time.ToDatetime() == timedelta(seconds=10)

    offered = await client.get_handoff(handoff.handoff_id)
    assert offered.state == H.HANDOFF_STATE_OFFERED
    assert offered.queue_position == 1
    assert offered.estimated_wait.ToTimedelta() == timedelta(0)  # its agent is deciding now
    pool = pool_counts(await client.pool_status())
    assert pool.agents == agents(OFFLINE=1, BUSY=1)  # capacity 1, one pending offer
    assert pool.queue_by_urgency == queue(HIGH=1)  # an offered handoff still waits

    # She accepts: the handoff is hers.
    interaction = await agent.accept(offer.offer_id)
    assert interaction.interaction_id == offer.offer_id
    assigned = await client.get_handoff(handoff.handoff_id)
    assert assigned.state == H.HANDOFF_STATE_ASSIGNED
    assert assigned.queue_position == 0
    assert (assigned.assigned_agent.agent_id, assigned.assigned_agent.display_name) == (
        "alice",
        "Alice",
    )
    assert assigned.HasField("assign_time")
    pool = pool_counts(await client.pool_status())
    assert pool.agents == agents(OFFLINE=1, BUSY=1)
    assert pool.queue_by_urgency == queue()
    assert pool.queue_by_type == {}
    assert pool.skills == {"billing": (0, 0)}
    assert pool.oldest_wait == 0

    # She completes it.
    done = await client.complete(
        "alice",
        interaction.interaction_id,
        H.OUTCOME_RESOLVED,
        disposition_code="refund/issued",
        notes="Refunded the second charge.",
    )
    assert done.outcome == H.OUTCOME_RESOLVED
    assert done.disposition_code == "refund/issued"
    assert done.HasField("handle_time")
    completed = await client.get_handoff(handoff.handoff_id)
    assert completed.state == H.HANDOFF_STATE_COMPLETED
    assert completed.outcome == H.OUTCOME_RESOLVED
    assert completed.disposition_code == "refund/issued"
    assert completed.HasField("end_time")
    assert completed.assigned_agent.agent_id == "alice"

    # The watch saw every state, in order, and ended after the terminal one.
    updates = await asyncio.wait_for(watched, READ_TIMEOUT)
    assert distinct_states([first.handoff, *updates]) == [
        "HANDOFF_STATE_QUEUED",
        "HANDOFF_STATE_OFFERED",
        "HANDOFF_STATE_ASSIGNED",
        "HANDOFF_STATE_COMPLETED",
    ]
    assert updates[-1].outcome == H.OUTCOME_RESOLVED
    assert await watch.code() == grpc.StatusCode.OK

    # Alice is free again and the queue is empty.
    pool = pool_counts(await client.pool_status())
    assert pool.agents == agents(OFFLINE=1, AVAILABLE=1)
    assert pool.skills == {"billing": (1, 1)}
    assert pool.languages == {"en": (1, 1)}
    assert pool.queue_by_urgency == queue()
    me = await client.get_agent("alice")
    assert (me.load, me.state) == (0, agent_pb2.AGENT_STATE_AVAILABLE)
    assert me.HasField("last_assign_time")

    # Closing the stream without work is a log-out: offline at once.
    agent.leave()
    with pytest.raises(EOFError):
        await agent.next(READ_TIMEOUT)
    await eventually(
        lambda: client.get_agent("alice"),
        lambda a: a.state == agent_pb2.AGENT_STATE_OFFLINE,
        what="alice offline after logging out",
    )


async def test_bad_input_is_refused_with_field_violations_and_changes_nothing(
    server: ServerProcess, client: Stubs
) -> None:
    await client.create_agent("alice", {"billing": 4})
    queued = await client.request_handoff(skills={"fraud": 3}, summary=SUMMARY)
    before = pool_counts(await client.pool_status())

    bad_handoff = await refused(
        client.handoffs.RequestHandoff(
            handoff_request(
                request_id="not-a-uuid",
                conversation_id="",
                interaction_type="Billing Dispute",
                skills={"billing": 9},
                language="english please",
                urgency=99,
                summary="tab\tis fine, a bell\x07 is not",
            )
        )
    )
    assert bad_handoff.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_handoff.violations) == {
        "request_id",
        "conversation_id",
        "interaction_type",
        "required_skills[0].min_proficiency",
        "language",
        "urgency",
        "summary",
    }
    assert bad_handoff.reason

    bad_agent = await refused(
        client.pool.CreateAgent(
            pool_service_pb2.CreateAgentRequest(
                agent_id="Not An Id",
                agent=agent_pb2.Agent(
                    skills=[agent_pb2.AgentSkill(skill="billing", proficiency=0)],
                    languages=["not a language"],
                    capacity=21,
                ),
            )
        )
    )
    assert bad_agent.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_agent.violations) == {
        "agent_id",
        "agent.skills[0].proficiency",
        "agent.languages[0]",
        "agent.capacity",
    }

    bad_get = await refused(client.get_handoff("42"))
    assert (bad_get.code, set(bad_get.violations)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"handoff_id"},
    )

    bad_complete = await refused(client.complete("alice", "42", H.OUTCOME_UNSPECIFIED))
    assert (bad_complete.code, set(bad_complete.violations)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"interaction_id", "outcome"},
    )

    # A Connect stream must start with hello or resume.
    async def heartbeat_first() -> AsyncIterator[ConnectRequest]:
        yield ConnectRequest(heartbeat=ConnectRequest.Heartbeat())

    call = client.agents.Connect(heartbeat_first(), metadata=client.metadata_of("alice"))
    with pytest.raises(grpc.aio.AioRpcError) as not_hello:
        await asyncio.wait_for(call.read(), READ_TIMEOUT)
    bad_stream = failure(not_hello.value)
    assert (bad_stream.code, set(bad_stream.violations)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"command"},
    )

    # The other codes the API documents for these calls.
    ghost = client.agent("ghost")
    with pytest.raises(grpc.aio.AioRpcError) as unknown_agent:
        await ghost.hello()
    assert failure(unknown_agent.value).code == grpc.StatusCode.NOT_FOUND
    ghost.leave()
    missing = await refused(client.get_handoff(str(uuid.uuid4())))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "HANDOFF_NOT_FOUND")
    taken = await refused(client.create_agent("alice"))
    assert taken.code == grpc.StatusCode.ALREADY_EXISTS

    # Idempotency: the same request id and content gives the same handoff, other content is
    # refused.
    again = await client.request_handoff(
        request_id=queued.request_id, skills={"fraud": 3}, summary=SUMMARY
    )
    assert again.handoff_id == queued.handoff_id
    reused = await refused(
        client.handoffs.RequestHandoff(
            handoff_request(request_id=queued.request_id, skills={"fraud": 3}, summary="other")
        )
    )
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")

    # Nothing changed.
    after = pool_counts(await client.pool_status())
    assert replace(after, oldest_wait=0) == replace(before, oldest_wait=0)
    listed = await client.pool.ListAgents(pool_service_pb2.ListAgentsRequest())
    assert [a.agent_id for a in listed.agents] == ["alice"]
    still = await client.get_handoff(queued.handoff_id)
    assert (still.state, still.queue_position) == (H.HANDOFF_STATE_QUEUED, 1)
