"""The Prometheus endpoint of a real `humanline serve` process, scraped during a small run.

The server runs with HUMANLINE_METRICS_LISTEN; this process drives it over gRPC (ops, a bot,
one agent) and reads /metrics over HTTP in the middle of the run and at its end: the numbers
are what it did. (The metrics' arithmetic in detail: tests/integration/test_metrics.py.)
"""

from __future__ import annotations

import pytest

from tests.e2e.process import StartServer, connect, free_port
from tests.support.metrics import until, value

pytestmark = pytest.mark.e2e

KIND = "e2e_metrics"


async def test_metrics_scraped_during_a_run_match_what_happened(
    start_server: StartServer,
) -> None:
    port = free_port()
    server = await start_server(
        HUMANLINE_METRICS_LISTEN=f"127.0.0.1:{port}", HUMANLINE_METRICS_REFRESH_SECONDS="0.2"
    )
    client = connect(server.target)
    try:
        await client.create_agent("mia", {"general": 3})
        mia = client.agent("mia")
        await mia.hello()
        first, second, third = [
            await client.request_handoff(interaction_type=KIND) for _ in range(3)
        ]
        offer = await mia.offer()
        assert offer.details.handoff_id == first.handoff_id
        held = await mia.accept(offer.offer_id)

        # In the middle: one handoff with mia, two waiting.
        middle = await until(
            port,
            lambda s: (
                value(s, "humanline_queue_depth", interaction_type=KIND) == 2
                and value(s, "humanline_agents", state="BUSY") == 1
            ),
        )
        requested = "humanline_handoffs_requested_total"
        assert value(middle, requested, interaction_type=KIND, urgency="NORMAL") == 3
        assert value(middle, "humanline_offers_total", result="accepted") == 1
        assert value(middle, "humanline_time_to_agent_seconds_count", interaction_type=KIND) == 1

        await client.complete("mia", held.interaction_id)
        offer = await mia.offer()
        assert offer.details.handoff_id == second.handoff_id
        held = await mia.accept(offer.offer_id)
        await client.complete("mia", held.interaction_id)
        offer = await mia.offer()
        assert offer.details.handoff_id == third.handoff_id
        await mia.decline(offer.offer_id)
        await client.cancel_handoff(third.handoff_id)

        end = await until(
            port,
            lambda s: (
                value(s, "humanline_queue_depth", interaction_type=KIND) == 0
                and value(s, "humanline_agents", state="AVAILABLE") == 1
            ),
        )
    finally:
        await client.close()

    offers = {
        r: value(end, "humanline_offers_total", result=r)
        for r in ("sent", "accepted", "declined", "expired", "rescinded")
    }
    assert offers == {"sent": 3, "accepted": 2, "declined": 1, "expired": 0, "rescinded": 0}
    ended = "humanline_handoffs_ended_total"
    assert value(end, ended, interaction_type=KIND, outcome="resolved") == 2
    assert value(end, ended, interaction_type=KIND, outcome="cancelled") == 1
    assert value(end, "humanline_time_to_offer_seconds_count", interaction_type=KIND) == 3
    assert value(end, "humanline_time_to_agent_seconds_count", interaction_type=KIND) == 2
    assert value(end, "humanline_rpc_duration_seconds_count", method="RequestHandoff") == 3
    assert value(end, "humanline_rpc_duration_seconds_count", method="CompleteInteraction") == 2
    assert not [n for (n, _), v in end.items() if n == "humanline_rpc_errors_total" and v]
