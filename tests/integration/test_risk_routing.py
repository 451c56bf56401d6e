"""Risk-aware routing over gRPC: a handoff's type policy and the bot's signals set its
urgency, its proficiency floor, its default skills and its target; GetHandoff says why."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2

from humanline.v1 import handoff_pb2, pool_service_pb2, routing_pb2
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
        "over 500; min proficiency 4: policy floor 4; experts (best skill 5+) not kept back: "
        "no other agent online"
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


async def test_routine_handoffs_are_not_starved_by_a_long_urgent_burst(
    client: Stubs,
) -> None:
    """Ordering by deadline ages every handoff: a LOW one queued first is served once its
    deadline is earlier than those of the CRITICAL ones still arriving, though they never
    stop arriving while it waits."""
    # A quick type: targets of 0.2 s at NORMAL, 0.5 s at LOW, 0.05 s at CRITICAL.
    await client.pool.CreateRoutingPolicy(
        pool_service_pb2.CreateRoutingPolicyRequest(
            policy=routing_pb2.RoutingPolicy(
                interaction_type="quick",
                target=duration_pb2.Duration(nanos=200_000_000),
                max_wait=duration_pb2.Duration(seconds=600),
            )
        )
    )
    await client.create_agent("solo", {"general": 3})
    solo = client.agent("solo")
    routine = await _request(client, interaction_type="quick", urgency=H.URGENCY_LOW)

    stop = asyncio.Event()
    urgent_ids: list[str] = []  # in the order they were queued

    async def burst() -> None:  # faster than solo works: a queue of urgent ones builds
        while not stop.is_set():
            handoff = await _request(client, interaction_type="quick", urgency=H.URGENCY_CRITICAL)
            urgent_ids.append(handoff.handoff_id)
            await asyncio.sleep(0.05)

    bursting = asyncio.gather(*(burst() for _ in range(2)))
    await asyncio.sleep(0.3)  # urgent ones queue up behind the routine one, and go ahead
    await solo.hello()
    served: list[str] = []
    try:
        async with asyncio.timeout(30):
            while routine.handoff_id not in served:
                offer = await solo.offer(timeout=10)
                served.append(offer.details.handoff_id)
                waiting_then = set(urgent_ids) - set(served)
                interaction = await solo.accept(offer.offer_id)
                await asyncio.sleep(0.15)  # the handle time
                await client.complete("solo", interaction.interaction_id)
    finally:
        stop.set()
        await bursting
    # Urgent handoffs went first; the routine one got its agent while urgent ones, queued
    # before it was offered, were still waiting.
    assert served[-1] == routine.handoff_id
    assert len(served) > 1
    assert waiting_then, "no urgent handoff was waiting: the test made no pressure"


async def test_routine_work_leaves_the_expert_free_for_the_risky_kind(client: Stubs) -> None:
    """Standard refunds go to the least proficient agent who qualifies, so that a billing
    dispute coming next still finds the expert free (most proficient first, the refund
    would have taken the expert and the dispute would wait)."""
    await client.create_agent("expert", {"billing": 5})
    await client.create_agent("junior", {"billing": 2})
    expert, junior = client.agent("expert"), client.agent("junior")
    await expert.hello()
    await junior.hello()
    refund = await _request(client, interaction_type="standard_refund")
    # The junior is online: the expert is kept back for a minute, and tried last anyway.
    assert refund.routing.endswith(
        "; least expert agent first; experts (best skill 4+) only after 1m"
    )
    offer = await junior.offer()
    assert offer.details.handoff_id == refund.handoff_id
    dispute = await _request(client, interaction_type="billing_dispute")
    offer = await expert.offer()
    assert offer.details.handoff_id == dispute.handoff_id
