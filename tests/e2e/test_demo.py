"""`humanline demo --compare` as a user runs it: the default scenario (cut short) played
against two servers of its own, routed by topic and urgency and then by the risk policies,
and the two set side by side."""

from __future__ import annotations

import asyncio
import sys

import pytest

from humanline.domain.routing import DEFAULT_POLICIES

pytestmark = pytest.mark.e2e

TYPES = tuple(p.interaction_type for p in DEFAULT_POLICIES)  # the scenario's six


async def test_the_demo_compares_topic_routing_with_risk_routing() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "humanline",
        "demo",
        "--compare",
        "--duration",
        "6",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(240):
        out, err = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, err.decode()
    said = " ".join(text.split())  # the console wraps long lines at 120 columns
    assert "(1 of 2, by topic and urgency)" in said
    assert "routing default-routing-topic.toml" in said
    assert "(2 of 2, by risk)" in said
    assert "routing default-routing.toml" in said
    comparison = text[text.index("before (topic and urgency) → after (risk policies)") :]
    comparison = comparison[: comparison.index("default: handoffs by interaction type")]
    rows = {line.split("│")[1].strip(): line for line in comparison.splitlines() if "│" in line}
    # Six seconds of arrivals (seed 1) bring no fraud case: every other type, and the total.
    assert set(rows) <= {*TYPES, "all"}, comparison
    assert {"order_lookup", "standard_refund", "billing_dispute", "all"} <= set(rows), comparison
    for row in rows.values():
        assert row.count("→") == 6  # before → after, in each measure
        before, after = row.split("│")[3].split("/")
        assert int(before) == int(after), row  # the same customers in both runs
    assert "estimate" in text  # the risk run's own table, with the estimates' error
