"""Risk-aware routing over gRPC: a handoff's type policy and the bot's signals set its
urgency, its proficiency floor, its default skills and its target; GetHandoff says why."""

from __future__ import annotations

import grpc
import pytest

from humanline.v1 import handoff_pb2
from tests.support.client import Stubs, error_details, handoff_request

H = handoff_pb2


async def _request(client: Stubs, **fields: object) -> H.Handoff:
    signals = fields.pop("signals", None)
    request = handoff_request(**fields)  # type: ignore[arg-type]
    if signals is not None:
        request.signals.CopyFrom(signals)  # type: ignore[arg-type]
    return (await client.handoffs.RequestHandoff(request)).handoff


async def test_signals_raise_the_urgency_and_get_handoff_says_why(client: Stubs) -> None:
    handoff = await _request(
        client,
        interaction_type="billing_dispute",
        urgency=H.URGENCY_NORMAL,
        signals=H.RiskSignals(distress=True, disputed_amount=750.0),
    )
    assert handoff.urgency == H.URGENCY_HIGH
    expected = (
        "policy billing_dispute; urgency HIGH (asked NORMAL): distress and disputed amount "
        "over 500; min proficiency 4: policy floor 4"
    )
    assert handoff.routing == expected
    # The policy's default skills at its floor, as the bot named none.
    assert [(s.skill, s.min_proficiency) for s in handoff.required_skills] == [("billing", 4)]
    got = await client.get_handoff(handoff.handoff_id)
    assert (got.routing, got.urgency) == (expected, H.URGENCY_HIGH)
    # The target: billing_dispute's 45 s, halved for HIGH (60 s of the default 120 s).
    target = got.target_time.ToDatetime() - got.create_time.ToDatetime()
    assert target.total_seconds() == pytest.approx(22.5)


async def test_an_unknown_type_is_routed_by_the_fallback_and_says_so(client: Stubs) -> None:
    handoff = await _request(client, interaction_type="warranty_claim", skills={"orders": 2})
    assert handoff.routing == "policy default (fallback); urgency NORMAL: as asked"
    assert [(s.skill, s.min_proficiency) for s in handoff.required_skills] == [("orders", 2)]
    target = handoff.target_time.ToDatetime() - handoff.create_time.ToDatetime()
    assert target.total_seconds() == pytest.approx(120)


async def test_suspected_fraud_goes_to_a_proficient_agent(client: Stubs) -> None:
    await client.create_agent("novice", {"fraud": 2})
    await client.create_agent("expert", {"fraud": 5})
    novice, expert = client.agent("novice"), client.agent("expert")
    await novice.hello()
    handoff = await _request(
        client,
        interaction_type="order_lookup",
        skills={"fraud": 1},
        signals=H.RiskSignals(suspected_fraud=True),
    )
    assert handoff.urgency == H.URGENCY_HIGH
    assert "min proficiency 4: suspected fraud" in handoff.routing
    assert [(s.skill, s.min_proficiency) for s in handoff.required_skills] == [("fraud", 4)]
    assert await novice.quiet(0.3) == []  # not offered to the novice
    await expert.hello()
    offer = await expert.offer()
    assert offer.details.handoff_id == handoff.handoff_id


@pytest.mark.parametrize(
    ("signals", "field"),
    [
        (H.RiskSignals(sentiment=2.0), "signals.sentiment"),
        (H.RiskSignals(bot_confidence=-1), "signals.bot_confidence"),
        (H.RiskSignals(disputed_amount=float("nan")), "signals.disputed_amount"),
        (H.RiskSignals(tenure_days=-3), "signals.tenure_days"),
        (H.RiskSignals(tier=42), "signals.tier"),  # type: ignore[arg-type]
    ],
)
async def test_bad_signals_are_refused(client: Stubs, signals: H.RiskSignals, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _request(client, signals=signals)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error_details(refused.value)["violations"]


async def test_the_same_request_with_other_signals_is_another_request(client: Stubs) -> None:
    request = handoff_request()
    first = (await client.handoffs.RequestHandoff(request)).handoff
    again = (await client.handoffs.RequestHandoff(request)).handoff
    assert again.handoff_id == first.handoff_id
    request.signals.CopyFrom(H.RiskSignals(distress=True))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await client.handoffs.RequestHandoff(request)
    assert error_details(reused.value)["reason"] == "REQUEST_ID_REUSED"
