"""Guarantee 4: the same idempotency key gives the same result; the same key with different
content is refused. For RequestHandoff (request_id) and CompleteInteraction (interaction)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from humanline.v1 import handoff_pb2
from tests.support.client import Stubs, error_details


async def test_same_request_id_same_content_returns_the_same_handoff(client: Stubs) -> None:
    request_id = str(uuid.uuid4())
    first = await client.request_handoff(request_id=request_id, summary="same")
    second = await client.request_handoff(request_id=request_id, summary="same")
    assert first.handoff_id == second.handoff_id
    # The key is a UUID: any spelling of the same UUID is the same key.
    third = await client.request_handoff(request_id=request_id.upper(), summary="same")
    assert third.handoff_id == first.handoff_id
    depth = {c.urgency: c.count for c in (await client.pool_status()).queue_by_urgency}
    assert depth[handoff_pb2.URGENCY_NORMAL] == 1


async def test_same_request_id_other_content_is_refused_and_changes_nothing(
    client: Stubs,
) -> None:
    request_id = str(uuid.uuid4())
    first = await client.request_handoff(request_id=request_id, summary="original")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.request_handoff(request_id=request_id, summary="something else")
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(refused.value)["reason"] == "REQUEST_ID_REUSED"
    unchanged = await client.get_handoff(first.handoff_id)
    assert unchanged.summary == "original"


async def test_concurrent_retries_with_one_key_create_one_handoff(client: Stubs) -> None:
    request_id = str(uuid.uuid4())
    results = await asyncio.gather(
        *(client.request_handoff(request_id=request_id) for _ in range(25))
    )
    assert len({h.handoff_id for h in results}) == 1


async def test_completing_twice_same_content_is_idempotent_other_content_refused(
    client: Stubs,
) -> None:
    await client.create_agent("ann", {"general": 3})
    ann = client.agent("ann")
    await ann.hello()
    await client.request_handoff()
    interaction = await ann.accept((await ann.offer()).offer_id)
    first = await client.complete(ann.agent_id, interaction.interaction_id, notes="n")
    again = await client.complete(ann.agent_id, interaction.interaction_id, notes="n")
    assert first == again
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.complete(
            ann.agent_id, interaction.interaction_id, handoff_pb2.OUTCOME_UNRESOLVED, notes="n"
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused.value)["reason"] == "INTERACTION_ALREADY_COMPLETED"
    # The agent's slot was freed once, not twice.
    assert (await client.get_agent("ann")).load == 0


async def test_completing_another_agents_interaction_is_denied(client: Stubs) -> None:
    await client.create_agent("ann", {"general": 3})
    await client.create_agent("bob", {"other": 3})
    ann = client.agent("ann")
    await ann.hello()
    handoff = await client.request_handoff(skills={"general": 1})
    interaction = await ann.accept((await ann.offer()).offer_id)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await client.complete("bob", interaction.interaction_id)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(denied.value)["reason"] == "INTERACTION_NOT_HELD"
    assert (await client.get_handoff(handoff.handoff_id)).state == (
        handoff_pb2.HANDOFF_STATE_ASSIGNED
    )
