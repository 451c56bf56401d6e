"""GetQualityReport over gRPC: a small window of handoffs played through the service (taken,
declined, completed with outcomes, rated, cancelled, expired) and its report by interaction
type, agent, skill and risk class, every number as worked out by hand; windows and bad
requests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from humanline.v1 import (
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
    quality_pb2,
    routing_pb2,
)
from tests.support.client import AgentDriver, Stubs, error_details, stamp

Q = quality_pb2


async def _rate(client: Stubs, handoff_id: str, csat: int) -> None:
    await client.handoffs.RecordFeedback(
        handoff_service_pb2.RecordFeedbackRequest(handoff_id=handoff_id, csat=csat)
    )


async def _serve(client: Stubs, driver: AgentDriver, outcome: int, csat: int | None = None) -> str:
    """The agent takes its next offer and completes it with `outcome`; returns the handoff."""
    offer = await driver.offer()
    interaction = await driver.accept(offer.offer_id)
    await client.complete(driver.agent_id, interaction.interaction_id, outcome)
    if csat is not None:
        await _rate(client, offer.details.handoff_id, csat)
    return offer.details.handoff_id


async def _window(client: Stubs) -> datetime:
    """Three billing disputes (two served by ann, one declined by her and cancelled), two
    order lookups served by bob, and a warranty claim nobody can take that expires. Returns
    a moment before all of them."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    await client.pool.CreateRoutingPolicy(
        pool_service_pb2.CreateRoutingPolicyRequest(
            policy=routing_pb2.RoutingPolicy(
                interaction_type="warranty",
                target=duration_pb2.Duration(nanos=100_000_000),
                max_wait=duration_pb2.Duration(nanos=300_000_000),
            )
        )
    )
    await client.create_agent("ann", {"billing": 4})
    await client.create_agent("bob", {"orders": 2})
    ann, bob = client.agent("ann"), client.agent("bob")
    await ann.hello()
    await bob.hello()
    resolved, unresolved = handoff_pb2.OUTCOME_RESOLVED, handoff_pb2.OUTCOME_UNRESOLVED

    async def dispute() -> None:
        await client.request_handoff(interaction_type="billing_dispute", skills={"billing": 3})

    await dispute()
    await _serve(client, ann, resolved, csat=5)
    await dispute()
    await _serve(client, ann, unresolved, csat=2)
    await dispute()
    declined = await ann.offer()
    await ann.decline(declined.offer_id)
    await client.cancel_handoff(declined.details.handoff_id)
    for csat in (4, None):
        await client.request_handoff(interaction_type="order_lookup", skills={"orders": 1})
        await _serve(client, bob, resolved, csat=csat)
    claim = await client.request_handoff(interaction_type="warranty", skills={"warranty": 1})
    for _ in range(50):
        if (await client.get_handoff(claim.handoff_id)).state == handoff_pb2.HANDOFF_STATE_EXPIRED:
            break
        await asyncio.sleep(0.1)
    return start


async def _report(
    client: Stubs, by: int, **fields: object
) -> pool_service_pb2.GetQualityReportResponse:
    request = pool_service_pb2.GetQualityReportRequest(group_by=by, **fields)  # type: ignore[arg-type]
    return await client.pool.GetQualityReport(request)


def _groups(report: pool_service_pb2.GetQualityReportResponse) -> dict[str, Q.QualityGroup]:
    return {g.key: g for g in report.groups}


async def test_the_report_of_a_window_by_each_dimension(client: Stubs) -> None:
    await _window(client)
    by_type = await _report(client, Q.QUALITY_DIMENSION_INTERACTION_TYPE)
    groups = _groups(by_type)
    assert list(groups) == ["billing_dispute", "order_lookup", "warranty"]
    dispute = groups["billing_dispute"]
    assert (dispute.handoffs, dispute.completed, dispute.resolved) == (3, 2, 1)
    assert dispute.resolution_rate == pytest.approx(0.5)
    assert (dispute.csat_count, dispute.csat_mean) == (2, pytest.approx(3.5))
    assert list(dispute.csat_counts) == [0, 1, 0, 0, 1]
    assert dispute.csat_satisfied == pytest.approx(0.5)
    assert dispute.within_target == pytest.approx(2 / 3)  # the cancelled one never got there
    assert dispute.abandoned == pytest.approx(1 / 3)
    assert dispute.expired == 0
    assert (dispute.offers, dispute.offer_accept_rate) == (3, pytest.approx(2 / 3))
    assert dispute.time_to_agent_p90.ToTimedelta() < timedelta(seconds=5)
    assert dispute.handle_time_mean.ToTimedelta() > timedelta(0)
    lookup = groups["order_lookup"]
    assert (lookup.handoffs, lookup.resolution_rate, lookup.csat_count) == (2, 1.0, 1)
    warranty = groups["warranty"]
    assert (warranty.handoffs, warranty.expired, warranty.completed) == (1, 1.0, 0)
    assert not warranty.HasField("resolution_rate")  # nothing completed: no rate
    assert not warranty.HasField("csat_mean")
    assert not warranty.HasField("time_to_agent_p50")
    overall = by_type.overall
    assert (overall.key, overall.handoffs, overall.completed, overall.resolved) == ("all", 6, 4, 3)

    agents = _groups(await _report(client, Q.QUALITY_DIMENSION_AGENT))
    assert list(agents) == ["ann", "bob"]  # the cancelled and expired ones: nobody's
    assert (agents["ann"].handoffs, agents["ann"].offers) == (2, 3)
    assert agents["ann"].offer_accept_rate == pytest.approx(2 / 3)
    assert agents["bob"].resolution_rate == 1.0

    skills = _groups(await _report(client, Q.QUALITY_DIMENSION_SKILL))
    # billing_dispute's policy floor raised the bot's billing 3 to 4; the skill is the same.
    assert {k: g.handoffs for k, g in skills.items()} == {"billing": 3, "orders": 2, "warranty": 1}

    risks = _groups(await _report(client, Q.QUALITY_DIMENSION_RISK_CLASS))
    assert {k: g.handoffs for k, g in risks.items()} == {"HIGH": 3, "LOW": 2, "MEDIUM": 1}


async def test_a_window_holds_the_handoffs_requested_within_it(client: Stubs) -> None:
    start = await _window(client)
    # The numbers are kept per second (recent ones): a window's ends are second boundaries.
    before = start.replace(microsecond=0)
    earlier = await _report(
        client,
        Q.QUALITY_DIMENSION_INTERACTION_TYPE,
        start_time=stamp(before - timedelta(hours=1)),
        end_time=stamp(before),
    )
    assert list(earlier.groups) == []
    assert earlier.overall.handoffs == 0
    assert not earlier.overall.HasField("within_target")
    assert earlier.end_time.ToDatetime(UTC) == before
    # An end within a second moves up to the second's end, and the report says so.
    rounded = await _report(
        client,
        Q.QUALITY_DIMENSION_INTERACTION_TYPE,
        start_time=stamp(before - timedelta(seconds=1.5)),
        end_time=stamp(before + timedelta(seconds=0.25)),
    )
    assert rounded.start_time.ToDatetime(UTC) == before - timedelta(seconds=1)
    assert rounded.end_time.ToDatetime(UTC) == before + timedelta(seconds=1)
    one_type = await _report(client, Q.QUALITY_DIMENSION_AGENT, interaction_type="order_lookup")
    assert [g.key for g in one_type.groups] == ["bob"]
    assert one_type.overall.handoffs == 2
    # By default, the last day up to now.
    default = await _report(client, Q.QUALITY_DIMENSION_INTERACTION_TYPE)
    span = default.end_time.ToDatetime() - default.start_time.ToDatetime()
    # (the day-old end on a minute boundary, as the numbers that far back are kept)
    assert timedelta(days=1) - timedelta(minutes=1) < span <= timedelta(days=1)


async def _easy_and_hard(client: Stubs) -> None:
    """One agent completes 40 "easy" handoffs, 36 resolved, and 40 "hard" ones, 10
    resolved, in turn."""
    await client.create_agent("ann", {"general": 3})
    ann = client.agent("ann")
    await ann.hello()
    resolved, unresolved = handoff_pb2.OUTCOME_RESOLVED, handoff_pb2.OUTCOME_UNRESOLVED
    for i in range(40):
        await client.request_handoff(interaction_type="easy", skills={"general": 1})
        await _serve(client, ann, resolved if i % 10 else unresolved)
        await client.request_handoff(interaction_type="hard", skills={"general": 1})
        await _serve(client, ann, resolved if i % 4 == 0 else unresolved)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "group_by"),
        ({"group_by": 99}, "group_by"),
        (
            {
                "group_by": Q.QUALITY_DIMENSION_AGENT,
                "start_time": timestamp_pb2.Timestamp(seconds=1_800_000_000),
                "end_time": timestamp_pb2.Timestamp(seconds=1_700_000_000),
            },
            "end_time",
        ),
        (
            {
                "group_by": Q.QUALITY_DIMENSION_AGENT,
                "start_time": timestamp_pb2.Timestamp(seconds=1_000_000_000),
                "end_time": timestamp_pb2.Timestamp(seconds=1_700_000_000),
            },
            "start_time",
        ),
        (
            {
                "group_by": Q.QUALITY_DIMENSION_AGENT,
                "start_time": timestamp_pb2.Timestamp(seconds=-5),
            },
            "start_time",
        ),
        (
            {"group_by": Q.QUALITY_DIMENSION_AGENT, "interaction_type": "Bad Type!"},
            "interaction_type",
        ),
    ],
)
async def test_a_bad_report_request_names_its_field(
    client: Stubs, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.pool.GetQualityReport(pool_service_pb2.GetQualityReportRequest(**fields))  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error_details(refused.value)["violations"]


async def test_a_type_resolving_far_less_than_the_rest_is_flagged(client: Stubs) -> None:
    await _easy_and_hard(client)
    found = await _report(client, Q.QUALITY_DIMENSION_INTERACTION_TYPE)
    (alert,) = found.alerts
    assert alert.key == "hard"
    assert alert.metric == Q.QUALITY_METRIC_RESOLUTION_RATE
    assert alert.reference == Q.QUALITY_REFERENCE_POOL
    assert (alert.observed, alert.observed_samples) == (0.25, 40)
    assert (alert.expected, alert.expected_samples) == (0.9, 40)
    assert alert.gap == pytest.approx(0.65)
    assert alert.observed_low < 0.25 < alert.observed_high
    assert alert.p_value < 0.001
    assert "z-test" in alert.test
    # Within the hard type alone, by agent: one agent, no rest of the pool to hold it
    # against and no earlier window, so nothing is flagged.
    alone = await _report(client, Q.QUALITY_DIMENSION_AGENT, interaction_type="hard")
    assert list(alone.alerts) == []


async def test_the_alert_stream_tells_when_a_type_starts_failing(
    client: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    watch = client.pool.WatchQualityAlerts(pool_service_pb2.WatchQualityAlertsRequest())
    await _easy_and_hard(client)
    async with asyncio.timeout(10):
        message = await watch.read()
    watch.cancel()
    assert message.alert.key == "hard"
    assert not message.cleared
    assert message.alert.metric == Q.QUALITY_METRIC_RESOLUTION_RATE
    assert message.alert.observed_samples >= 30
    assert message.HasField("event_time")
    said = capsys.readouterr().out
    assert "quality_alert" in said
    assert "interaction_type=hard" in said or '"interaction_type": "hard"' in said
