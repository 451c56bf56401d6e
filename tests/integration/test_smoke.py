"""The happy path over real gRPC: log in, request, offer, accept, complete."""

from __future__ import annotations

from humanline.v1 import agent_pb2, handoff_pb2
from tests.support.client import Stubs


async def test_full_lifecycle(client: Stubs) -> None:
    await client.create_agent("alice", {"billing": 4}, display_name="Alice")
    agent = client.agent("alice")
    welcome = await agent.hello()
    assert welcome.agent.state == agent_pb2.AGENT_STATE_AVAILABLE

    handoff = await client.request_handoff(skills={"billing": 3}, urgency=handoff_pb2.URGENCY_HIGH)
    # An eligible agent is free: the offer is made in the request's own transaction.
    assert handoff.state == handoff_pb2.HANDOFF_STATE_OFFERED
    assert handoff.queue_position == 1
    assert handoff.estimated_wait.ToTimedelta().total_seconds() == 0

    offer = await agent.offer()
    assert offer.details.handoff_id == handoff.handoff_id
    interaction = await agent.accept(offer.offer_id)
    assigned = await client.get_handoff(handoff.handoff_id)
    assert assigned.state == handoff_pb2.HANDOFF_STATE_ASSIGNED
    assert assigned.assigned_agent.display_name == "Alice"

    done = await client.complete("alice", interaction.interaction_id, notes="refunded")
    assert done.outcome == handoff_pb2.OUTCOME_RESOLVED
    assert done.HasField("handle_time")
    final = await client.get_handoff(handoff.handoff_id)
    assert final.state == handoff_pb2.HANDOFF_STATE_COMPLETED
    agent.leave()
