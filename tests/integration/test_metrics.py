"""The Prometheus endpoint, scraped during a small run: its numbers are what happened.

One agent, three handoffs of two types: one declined (it then waits, never to be offered to
that agent again), two accepted and completed; the waiting one cancelled; one call and one
agent stream refused.
The Grafana dashboard in deploy/ asks only for metrics the endpoint serves.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from humanline.domain.rules import DispatchPolicy
from humanline.service.metrics import MetricsEndpoint
from humanline.v1 import handoff_pb2
from tests.conftest import Served, serve
from tests.support.metrics import scrape, until, value

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "humanline.json"


@pytest.fixture
async def metered(db_url: str, policy: DispatchPolicy) -> AsyncIterator[tuple[Served, int]]:
    """The service on a gRPC server, with its metrics served on a free port."""
    served = await serve(db_url, policy)
    endpoint = MetricsEndpoint(served.app.metrics, served.app.store, refresh=0.05)
    await endpoint.start("127.0.0.1:0")
    yield served, endpoint.port
    await endpoint.stop()
    async with asyncio.timeout(15):
        await served.stop()


async def test_the_endpoint_counts_what_happened(metered: tuple[Served, int]) -> None:
    served, port = metered
    client = served.stubs()
    try:
        await client.create_agent("alice", {"general": 3})
        alice = client.agent("alice")
        await alice.hello()

        first = await client.request_handoff(interaction_type="metrics_a")
        declined = await alice.offer()
        assert declined.details.handoff_id == first.handoff_id
        await alice.decline(declined.offer_id)

        second = await client.request_handoff(interaction_type="metrics_a")
        offer = await alice.offer()
        assert offer.details.handoff_id == second.handoff_id
        interaction = await alice.accept(offer.offer_id)
        await client.complete("alice", interaction.interaction_id)

        third = await client.request_handoff(
            interaction_type="metrics_b", urgency=handoff_pb2.URGENCY_HIGH
        )
        offer = await alice.offer()
        assert offer.details.handoff_id == third.handoff_id
        interaction = await alice.accept(offer.offer_id)
        await client.complete("alice", interaction.interaction_id, handoff_pb2.OUTCOME_UNRESOLVED)

        # The declined one waits: never offered to alice again, and nobody else is here.
        # (Gauges are read every 50 ms, each reading whole: wait for one that shows the
        # third one done and alice free, as after her completion.)
        samples = await until(
            port,
            lambda s: (
                value(s, "humanline_queue_depth", interaction_type="metrics_a") == 1
                and value(s, "humanline_queue_depth", interaction_type="metrics_b") == 0
                and value(s, "humanline_agents", state="AVAILABLE") == 1
            ),
        )
        assert value(samples, "humanline_queue_depth_by_urgency", urgency="NORMAL") == 1
        assert sum(v for (n, _), v in samples.items() if n == "humanline_queue_depth") == 1
        assert value(samples, "humanline_agents", state="AVAILABLE") == 1
        assert value(samples, "humanline_agents", state="BUSY") == 0

        await client.cancel_handoff(first.handoff_id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.get_handoff(str(uuid.uuid4()))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await client.agent("ghost").hello()  # no such agent: the stream is refused
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        alice.leave()

        samples = await until(
            port, lambda s: sum(v for (n, _), v in s.items() if n == "humanline_queue_depth") == 0
        )
    finally:
        await client.close()

    offers = {r: value(samples, "humanline_offers_total", result=r) for r in RESULTS}
    assert offers == {"sent": 3, "accepted": 2, "declined": 1, "expired": 0, "rescinded": 0}

    urgency_b = handoff_pb2.Urgency.Name(third.urgency).removeprefix("URGENCY_")
    requested = "humanline_handoffs_requested_total"
    assert value(samples, requested, interaction_type="metrics_a", urgency="NORMAL") == 2
    assert value(samples, requested, interaction_type="metrics_b", urgency=urgency_b) == 1

    ended = "humanline_handoffs_ended_total"
    endings = {
        (dict(labels)["interaction_type"], dict(labels)["outcome"]): v
        for (name, labels), v in samples.items()
        if name == ended
    }
    assert endings == {
        ("metrics_a", "resolved"): 1,
        ("metrics_a", "cancelled"): 1,
        ("metrics_b", "unresolved"): 1,
    }

    to_offer = "humanline_time_to_offer_seconds_count"
    to_agent = "humanline_time_to_agent_seconds_count"
    assert value(samples, to_offer, interaction_type="metrics_a") == 2
    assert value(samples, to_offer, interaction_type="metrics_b") == 1
    assert value(samples, to_agent, interaction_type="metrics_a") == 1
    assert value(samples, to_agent, interaction_type="metrics_b") == 1
    # Everything here was offered within a second of its request.
    bucket = "humanline_time_to_offer_seconds_bucket"
    assert value(samples, bucket, interaction_type="metrics_a", le="1.0") == 2

    durations = "humanline_rpc_duration_seconds_count"
    assert value(samples, durations, method="RequestHandoff") == 3
    assert value(samples, durations, method="CompleteInteraction") == 2
    assert value(samples, durations, method="GetHandoff") == 1
    errors = {
        (dict(labels)["method"], dict(labels)["code"]): v
        for (name, labels), v in samples.items()
        if name == "humanline_rpc_errors_total"
    }
    assert errors == {("GetHandoff", "NOT_FOUND"): 1, ("Connect", "NOT_FOUND"): 1}
    # The quality monitor checks at start and after completions; each check is timed.
    checks = await until(port, lambda s: value(s, "humanline_quality_check_seconds_count") >= 1)
    assert value(checks, "humanline_quality_check_seconds_sum") > 0
    # The store's round trips: the count it keeps, as it stood at the scrape.
    trips = value(checks, "humanline_store_round_trips_total")
    assert 0 < trips <= served.app.store.round_trips.total

    # The dashboard asks only for what the endpoint serves.
    text, _ = await asyncio.to_thread(scrape, port)
    families = list(text_string_to_metric_families(text))
    # (A family without samples, such as an empty queue's depth, still says its name.)
    served_names = {f.name for f in families} | {s.name for f in families for s in f.samples}
    used = dashboard_metrics()
    assert used, "the dashboard queries no humanline metric"
    assert sorted(used - served_names) == []


RESULTS = ("sent", "accepted", "declined", "expired", "rescinded")


def dashboard_metrics() -> set[str]:
    """Every humanline metric name the dashboard's queries use."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return {name for expr in exprs for name in re.findall(r"\bhumanline_[a-z_]+\b", expr)}
