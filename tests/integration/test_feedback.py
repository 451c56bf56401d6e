"""RecordFeedback over gRPC: the customer's rating of a completed handoff, reported by the bot
later. Idempotent (the same feedback again returns the handoff unchanged; other feedback is
refused), validated, and only after completion; whatever is refused changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from humanline.v1 import handoff_pb2, handoff_service_pb2
from tests.support.client import Stubs, error_details


async def _completed(client: Stubs) -> handoff_pb2.Handoff:
    await client.create_agent("ann", {"billing": 3})
    ann = client.agent("ann")
    await ann.hello()
    handoff = await client.request_handoff(skills={"billing": 1})
    interaction = await ann.accept((await ann.offer()).offer_id)
    await client.complete("ann", interaction.interaction_id)
    return handoff


def _feedback(
    handoff_id: str, csat: int, tags: Sequence[str] = (), again: bool = False
) -> handoff_service_pb2.RecordFeedbackRequest:
    return handoff_service_pb2.RecordFeedbackRequest(
        handoff_id=handoff_id, csat=csat, reason_tags=tags, contacted_again=again
    )


async def _refused(client: Stubs, request: handoff_service_pb2.RecordFeedbackRequest) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.handoffs.RecordFeedback(request)
    return refused.value


async def test_feedback_on_a_completed_handoff_is_kept_and_shown(client: Stubs) -> None:
    handoff = await _completed(client)
    request = _feedback(handoff.handoff_id, 2, ["slow", "not_resolved"], again=True)
    recorded = (await client.handoffs.RecordFeedback(request)).handoff
    assert recorded.feedback.csat == 2
    assert list(recorded.feedback.reason_tags) == ["slow", "not_resolved"]
    assert recorded.feedback.contacted_again
    assert recorded.feedback.HasField("record_time")
    assert await client.get_handoff(handoff.handoff_id) == recorded
    # The same again (tags in any order): the same answer, nothing changed.
    again = _feedback(handoff.handoff_id, 2, ["not_resolved", "slow"], again=True)
    assert (await client.handoffs.RecordFeedback(again)).handoff == recorded
    # Other feedback is refused.
    error = await _refused(client, _feedback(handoff.handoff_id, 5))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(error)["reason"] == "FEEDBACK_ALREADY_RECORDED"
    assert await client.get_handoff(handoff.handoff_id) == recorded


async def test_feedback_before_completion_is_refused(client: Stubs) -> None:
    queued = await client.request_handoff(skills={"nobody-has-this": 1})
    error = await _refused(client, _feedback(queued.handoff_id, 4))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error_details(error)
    assert details["reason"] == "HANDOFF_NOT_COMPLETED"
    assert details["metadata"]["state"] == "QUEUED"
    assert not (await client.get_handoff(queued.handoff_id)).HasField("feedback")


async def test_feedback_on_an_unknown_handoff_is_not_found(client: Stubs) -> None:
    error = await _refused(client, _feedback(str(uuid.uuid4()), 4))
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("csat", "tags", "field"),
    [
        (0, (), "csat"),  # unset
        (6, (), "csat"),
        (-1, (), "csat"),
        (3, ("Not A Tag",), "reason_tags[0]"),
        (3, ("slow", "slow"), "reason_tags[1]"),
        (3, tuple(f"t{i}" for i in range(21)), "reason_tags"),
    ],
)
async def test_bad_feedback_is_refused_with_its_field_and_changes_nothing(
    client: Stubs, csat: int, tags: tuple[str, ...], field: str
) -> None:
    handoff = await _completed(client)
    before = await client.get_handoff(handoff.handoff_id)
    error = await _refused(client, _feedback(handoff.handoff_id, csat, tags))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error_details(error)["violations"]
    assert await client.get_handoff(handoff.handoff_id) == before


async def test_concurrent_reports_record_exactly_one(client: Stubs) -> None:
    handoff = await _completed(client)

    async def report(csat: int) -> int | str:
        """The rating recorded, or the status code of the refusal."""
        try:
            answer = await client.handoffs.RecordFeedback(_feedback(handoff.handoff_id, csat))
        except grpc.aio.AioRpcError as error:
            return str(error.code().name)
        return answer.handoff.feedback.csat

    ratings = [1 + i % 5 for i in range(20)]
    results = await asyncio.gather(*(report(csat) for csat in ratings))
    stored = (await client.get_handoff(handoff.handoff_id)).feedback.csat
    # The reports of the stored rating succeed (the winner and what amount to its retries),
    # every other is refused as a conflict.
    for csat, result in zip(ratings, results, strict=True):
        assert result == (stored if csat == stored else "ALREADY_EXISTS")
