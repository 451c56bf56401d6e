"""Guarantee 6 at the API: bad input gets a clear status with details and changes nothing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
)
from tests.support.client import Stubs, error_details, handoff_request


async def rejected(call: object) -> tuple[grpc.StatusCode, dict[str, object]]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    return error.value.code(), error_details(error.value)


async def test_request_handoff_reports_every_bad_field_at_once(client: Stubs) -> None:
    request = handoff_request(request_id="nope", conversation_id="", interaction_type="Bad Type")
    request.required_skills.add(skill="billing", min_proficiency=9)
    request.required_skills.add(skill="billing", min_proficiency=2)
    request.language = "english!"
    request.urgency = 42  # type: ignore[assignment]
    request.summary = "x" * 4001
    code, details = await rejected(client.handoffs.RequestHandoff(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details["violations"]) == {  # type: ignore[arg-type]
        "request_id",
        "conversation_id",
        "interaction_type",
        "required_skills[0].min_proficiency",
        "required_skills[1].skill",
        "language",
        "urgency",
        "summary",
    }
    assert details["reason"] == "INVALID_ARGUMENT"
    status = await client.pool_status()
    assert sum(c.count for c in status.queue_by_urgency) == 0  # nothing was queued


async def test_unknown_ids_are_not_found_and_malformed_ids_invalid(client: Stubs) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for call in (
        client.handoffs.GetHandoff(handoff_service_pb2.GetHandoffRequest(handoff_id=missing)),
        client.handoffs.CancelHandoff(handoff_service_pb2.CancelHandoffRequest(handoff_id=missing)),
        client.pool.GetAgent(pool_service_pb2.GetAgentRequest(agent_id="ghost")),
        client.pool.DeleteAgent(pool_service_pb2.DeleteAgentRequest(agent_id="ghost")),
    ):
        code, details = await rejected(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert str(details["reason"]).endswith("_NOT_FOUND")
    code, details = await rejected(
        client.handoffs.GetHandoff(handoff_service_pb2.GetHandoffRequest(handoff_id="x"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "handoff_id" in details["violations"]  # type: ignore[operator]

    watch = client.handoffs.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=missing)
    )
    code, _ = await rejected(watch.read())
    assert code == grpc.StatusCode.NOT_FOUND


async def test_complete_interaction_validates_and_finds(client: Stubs) -> None:
    code, details = await rejected(
        client.agents.CompleteInteraction(
            agent_service_pb2.CompleteInteractionRequest(
                agent_id="Not An Id", interaction_id="x", disposition_code="no spaces allowed"
            ),
            metadata=client.metadata_of("ann"),  # a real agent's token, a malformed request
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details["violations"]) == {  # type: ignore[arg-type]
        "agent_id",
        "interaction_id",
        "outcome",
        "disposition_code",
    }
    code, details = await rejected(client.complete("ann", "00000000-0000-4000-8000-000000000000"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details["reason"] == "INTERACTION_NOT_FOUND"


async def test_create_agent_validates_and_refuses_duplicates(client: Stubs) -> None:
    agent = agent_pb2.Agent(
        skills=[
            agent_pb2.AgentSkill(skill="billing", proficiency=0),
            agent_pb2.AgentSkill(skill="billing", proficiency=3),
        ],
        languages=["xx-"],
        capacity=99,
    )
    code, details = await rejected(
        client.pool.CreateAgent(pool_service_pb2.CreateAgentRequest(agent_id="-bad", agent=agent))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    violations = details["violations"]
    assert "agent_id" in violations  # type: ignore[operator]
    assert "agent.skills[0].proficiency" in violations  # type: ignore[operator]
    assert "agent.skills[1].skill" in violations  # type: ignore[operator]
    assert "agent.languages[0]" in violations  # type: ignore[operator]
    assert "agent.capacity" in violations  # type: ignore[operator]
    code, _ = await rejected(
        client.pool.CreateAgent(pool_service_pb2.CreateAgentRequest(agent_id="no-profile"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    await client.create_agent("ann")
    code, details = await rejected(client.create_agent("ann"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert details["reason"] == "AGENT_EXISTS"


async def test_update_agent_masks_and_capacity_below_load(client: Stubs) -> None:
    await client.create_agent("ann", {"general": 3}, capacity=2)
    ann = client.agent("ann")
    await ann.hello()
    await client.request_handoff()
    await client.request_handoff()
    for _ in range(2):
        await ann.accept((await ann.offer()).offer_id)

    code, details = await rejected(
        client.pool.UpdateAgent(
            pool_service_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(agent_id="ann", capacity=1),
                update_mask=field_mask_pb2.FieldMask(paths=["capacity"]),
            )
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details["reason"] == "CAPACITY_BELOW_LOAD"
    assert (await client.get_agent("ann")).capacity == 2  # unchanged

    code, details = await rejected(
        client.pool.UpdateAgent(
            pool_service_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(agent_id="ann", capacity=3),
                update_mask=field_mask_pb2.FieldMask(paths=["capacity", "state"]),
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask.paths[1]" in details["violations"]  # type: ignore[operator]


async def test_delete_refuses_an_agent_in_use(client: Stubs) -> None:
    await client.create_agent("ann")
    ann = client.agent("ann")
    await ann.hello()
    code, details = await rejected(
        client.pool.DeleteAgent(pool_service_pb2.DeleteAgentRequest(agent_id="ann"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details["reason"] == "AGENT_IN_USE"
    assert (await client.get_agent("ann")).state == agent_pb2.AGENT_STATE_AVAILABLE


async def test_list_agents_rejects_bad_paging(client: Stubs) -> None:
    for request in (
        pool_service_pb2.ListAgentsRequest(page_size=5000),
        pool_service_pb2.ListAgentsRequest(page_token="garbage"),
        pool_service_pb2.ListAgentsRequest(state=77),  # type: ignore[arg-type]
    ):
        code, _ = await rejected(client.pool.ListAgents(request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_unspecified_urgency_means_normal(client: Stubs) -> None:
    handoff = await client.request_handoff(urgency=handoff_pb2.URGENCY_UNSPECIFIED)
    assert handoff.urgency == handoff_pb2.URGENCY_NORMAL
