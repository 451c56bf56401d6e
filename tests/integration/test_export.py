"""ExportOutcomes over gRPC: completed handoffs with the bot's words, the agent's outcome and
the customer's rating, in completion order, filtered by window, type, outcome, failure and
rating, read a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from humanline.service import pool
from humanline.v1 import handoff_pb2, handoff_service_pb2, pool_service_pb2
from tests.support.client import AgentDriver, Stubs, error_details, stamp

H = handoff_pb2


async def _done(
    client: Stubs,
    ann: AgentDriver,
    kind: str,
    outcome: int,
    csat: int = 0,
    again: bool = False,
) -> str:
    handoff = await client.request_handoff(
        interaction_type=kind, skills={"general": 1}, summary=f"about {kind}"
    )
    interaction = await ann.accept((await ann.offer()).offer_id)
    await client.complete("ann", interaction.interaction_id, outcome, notes=f"notes on {kind}")
    if csat:
        await client.handoffs.RecordFeedback(
            handoff_service_pb2.RecordFeedbackRequest(
                handoff_id=handoff.handoff_id, csat=csat, contacted_again=again
            )
        )
    return handoff.handoff_id


async def _export(client: Stubs, **fields: object) -> list[pool_service_pb2.ExportOutcomesResponse]:
    request = pool_service_pb2.ExportOutcomesRequest(**fields)  # type: ignore[arg-type]
    return [m async for m in client.pool.ExportOutcomes(request)]


async def test_the_export_selects_and_orders_completed_handoffs(
    client: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "EXPORT_PAGE", 2)  # pages of two: five handoffs span three
    await client.create_agent("ann", {"general": 3})
    ann = client.agent("ann")
    await ann.hello()
    ok = await _done(client, ann, "refund", H.OUTCOME_RESOLVED, csat=5)
    bad = await _done(client, ann, "refund", H.OUTCOME_UNRESOLVED, csat=4)
    angry = await _done(client, ann, "dispute", H.OUTCOME_RESOLVED, csat=1)
    back = await _done(client, ann, "dispute", H.OUTCOME_RESOLVED, csat=4, again=True)
    later = await _done(client, ann, "dispute", H.OUTCOME_TRANSFERRED)
    await client.request_handoff(interaction_type="refund", skills={"nobody": 1})  # queued

    every = await _export(client)
    assert [m.handoff.handoff_id for m in every] == [ok, bad, angry, back, later]
    first = every[0]
    assert (first.agent_id, first.notes) == ("ann", "notes on refund")
    assert first.handoff.summary == "about refund"
    assert first.handoff.reason == H.HANDOFF_REASON_CUSTOMER_REQUEST
    assert first.handoff.outcome == H.OUTCOME_RESOLVED
    assert first.handoff.feedback.csat == 5
    assert first.handoff.routing.startswith("policy default (fallback)")

    async def ids(**fields: object) -> list[str]:
        return [m.handoff.handoff_id for m in await _export(client, **fields)]

    assert await ids(interaction_type="refund") == [ok, bad]
    assert await ids(outcomes=[H.OUTCOME_UNRESOLVED, H.OUTCOME_TRANSFERRED]) == [bad, later]
    assert await ids(only_failures=True) == [bad, angry, back, later]
    assert await ids(max_csat=4) == [bad, angry, back]  # unrated ones are left out
    now = datetime.now(UTC)
    assert await ids(end_time=stamp(now - timedelta(hours=1))) == []
    assert await ids(start_time=stamp(now - timedelta(hours=1)), end_time=stamp(now)) == [
        ok,
        bad,
        angry,
        back,
        later,
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_csat": 6}, "max_csat"),
        ({"outcomes": [99]}, "outcomes[0]"),
        ({"outcomes": [0]}, "outcomes[0]"),
        ({"interaction_type": "Bad Type"}, "interaction_type"),
        ({"start_time": timestamp_pb2.Timestamp(seconds=-1)}, "start_time"),
    ],
)
async def test_a_bad_export_request_names_its_field(
    client: Stubs, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _export(client, **fields)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error_details(refused.value)["violations"]
