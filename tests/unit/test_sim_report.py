"""The simulator's summary, against hand-computed numbers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from humanline.sim.plot import draw
from humanline.sim.report import (
    ALL,
    AgentRecord,
    HandoffRecord,
    Observations,
    PoolSample,
    percentile,
    summarize,
)


def handoff(kind: str, urgency: str, wait: float | None, **fields: object) -> HandoffRecord:
    """A handoff created at t=100 with a target 10 s later, answered after `wait` seconds."""
    return HandoffRecord(
        handoff_id=f"{kind}-{urgency}-{wait}",
        interaction_type=kind,
        urgency=urgency,
        state=str(fields.pop("state", "COMPLETED" if wait is not None else "CANCELLED")),
        created=100.0,
        assigned=None if wait is None else 100.0 + wait,
        target=110.0,
        **fields,  # type: ignore[arg-type]
    )


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0


def test_rows_per_type_and_urgency_with_totals() -> None:
    seen = Observations(
        handoffs=[
            handoff("fraud", "HIGH", 2.0),
            handoff("fraud", "HIGH", 12.0),  # answered after its target
            handoff("fraud", "CRITICAL", None, abandoned=True),
            handoff("fraud", "CRITICAL", None, state="QUEUED"),  # still waiting at the end
            handoff("order_lookup", "LOW", 4.0),
        ],
        offers=Counter(
            {
                ("fraud", "HIGH", "accepted"): 2,
                ("fraud", "HIGH", "declined"): 3,
                ("fraud", "CRITICAL", "missed"): 1,
                ("order_lookup", "LOW", "accepted"): 1,
            }
        ),
    )
    rows = {(r.interaction_type, r.urgency): r for r in summarize("s", 60, seen).rows}
    assert list(rows) == [
        ("fraud", ALL),
        ("fraud", "HIGH"),
        ("fraud", "CRITICAL"),
        ("order_lookup", ALL),
        ("order_lookup", "LOW"),
        (ALL, ALL),
    ]
    high, fraud, everything = rows[("fraud", "HIGH")], rows[("fraud", ALL)], rows[(ALL, ALL)]
    assert (high.handoffs, high.answered, high.within_target) == (2, 2, 0.5)
    assert (high.time_to_agent_p50, high.time_to_agent_p99) == (7.0, pytest.approx(11.9))
    assert high.time_to_agent_mean == 7.0
    assert (high.offers_accepted, high.offers_declined, high.offers_missed) == (2, 3, 0)
    assert (fraud.handoffs, fraud.answered, fraud.abandoned, fraud.unfinished) == (4, 2, 0.25, 1)
    assert fraud.within_target == 0.25
    assert (fraud.offers_declined, fraud.offers_missed) == (3, 1)
    assert (everything.handoffs, everything.answered, everything.offers_accepted) == (5, 3, 3)
    assert everything.time_to_agent_p50 == 4.0


def test_occupancy_weighs_slots_by_time_logged_in() -> None:
    seen = Observations(
        agents=[
            AgentRecord("crew", capacity=2, online_seconds=100, busy_slot_seconds=50),
            AgentRecord("crew", capacity=1, online_seconds=50, busy_slot_seconds=50),
            AgentRecord("idle", capacity=1, online_seconds=0, busy_slot_seconds=0),
        ]
    )
    occupancy = {o.group: o for o in summarize("s", 60, seen).occupancy}
    assert list(occupancy) == ["crew", "idle", ALL]
    assert occupancy["crew"].occupancy == pytest.approx(100 / 250)
    assert occupancy["idle"].occupancy is None  # never logged in
    assert (occupancy[ALL].agents, occupancy[ALL].online_seconds) == (3, 150)


def test_the_json_has_every_part() -> None:
    seen = Observations(handoffs=[handoff("fraud", "HIGH", 1.0)])
    seen.errors["request UNAVAILABLE"] += 2
    data = summarize("tiny", 30, seen).to_json()
    parts = {"scenario", "duration_seconds", "by_type_and_urgency", "occupancy", "errors"}
    assert set(data) == parts
    assert data["errors"] == {"request UNAVAILABLE": 2}
    assert data["by_type_and_urgency"][0]["time_to_agent_p90"] == 1.0


def test_the_plot_draws_the_run(tmp_path: Path) -> None:
    seen = Observations(
        handoffs=[handoff("fraud", "HIGH", 2.0), handoff("fraud", "HIGH", None)],
        samples=[
            PoolSample(at=t, queued=t % 3, available_agents=2, oldest_wait=0.5) for t in range(5)
        ],
        started=95.0,
    )
    picture = tmp_path / "run.png"
    draw(seen, picture, "tiny")
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert picture.stat().st_size > 10_000
