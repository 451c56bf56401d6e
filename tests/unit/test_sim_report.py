"""The simulator's summary, against hand-computed numbers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from humanline.sim import scenario as scenarios
from humanline.sim.demo import yardsticks
from humanline.sim.plot import draw
from humanline.sim.report import (
    ALL,
    CSAT,
    RESOLUTION,
    AgentRecord,
    AlertRecord,
    Drop,
    HandoffRecord,
    Observations,
    OutcomeRecord,
    PoolSample,
    RatingRecord,
    Yardstick,
    compare,
    detections,
    percentile,
    summarize,
)
from humanline.sim.scenario import Change


def handoff(kind: str, urgency: str, wait: float | None, **fields: object) -> HandoffRecord:
    """A handoff created at t=100 with a target 10 s later, answered after `wait` seconds."""
    return HandoffRecord(
        handoff_id=str(fields.pop("handoff_id", f"{kind}-{urgency}-{wait}")),
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


def test_estimates_are_judged_by_their_median_absolute_error() -> None:
    seen = Observations(
        handoffs=[
            handoff("fraud", "HIGH", 2.0, estimated=1.0),  # off by 1
            handoff("fraud", "HIGH", 4.0, estimated=7.0),  # off by 3
            handoff("fraud", "HIGH", 5.0, estimated=5.5),  # off by 0.5
            handoff("fraud", "HIGH", 5.0),  # no estimate (nobody was online)
            handoff("fraud", "HIGH", None, estimated=2.0, expired=True),  # never answered
        ]
    )
    high = next(r for r in summarize("s", 60, seen).rows if r.urgency == "HIGH")
    assert (high.estimate_error_p50, high.estimated) == (1.0, 3)
    assert high.expired == 0.2


def test_a_comparison_measures_both_runs_with_the_same_yardstick() -> None:
    sticks = {
        "fraud": Yardstick(target=2.0, max_wait=6.0, risk="HIGH", proficient=frozenset({"pro"})),
        "order_lookup": Yardstick(
            target=10.0, max_wait=30.0, risk="LOW", proficient=frozenset({"pro", "rookie"})
        ),
    }
    scale = {"NORMAL": 1.0, "HIGH": 0.5}
    before = Observations(
        handoffs=[
            handoff("fraud", "HIGH", 3.0, handoff_id="b1"),  # offered after 2.5 s: late
            handoff("fraud", "NORMAL", 8.0, handoff_id="b2"),  # offered 7.5 s: late, over max
            handoff("order_lookup", "NORMAL", 1.0, handoff_id="b3"),
            handoff("fraud", "HIGH", None, handoff_id="b4", abandoned=True),
        ],
        offered={"b1": 102.5, "b2": 107.5, "b3": 100.2},
        taken_by={"b1": "pro", "b2": "pro", "b3": "rookie"},
    )
    after = Observations(
        handoffs=[
            handoff("fraud", "HIGH", 1.5, handoff_id="a1"),  # offered 0.5 s: in target (1 s)
            handoff("fraud", "NORMAL", 2.5, handoff_id="a2"),  # offered 1.5 s: in target (2 s)
            handoff("order_lookup", "NORMAL", 1.0, handoff_id="a3"),
            handoff("fraud", "HIGH", None, handoff_id="a4", state="EXPIRED", expired=True),
        ],
        offered={"a1": 100.5, "a2": 101.5, "a3": 100.1},
        taken_by={"a1": "pro", "a2": "rookie", "a3": "rookie"},  # a2: fast, not proficient
    )
    rows = {r.interaction_type: r for r in compare(before, after, sticks, scale)}
    assert list(rows) == ["fraud", "order_lookup", ALL]
    fraud = rows["fraud"]
    assert fraud.risk == "HIGH"
    assert fraud.handoffs == (3, 3)
    assert fraud.offered_in_target == (0.0, pytest.approx(2 / 3))
    assert fraud.proficient_in_target == (0.0, pytest.approx(1 / 3))
    assert fraud.time_to_offer_p90 == (pytest.approx(7.0), pytest.approx(1.4))
    # b2 waited 8 s (over 6 s); the expired a4 never got an agent (the abandoned b4 left).
    assert fraud.over_max_wait == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert fraud.abandoned == (pytest.approx(1 / 3), 0.0)
    assert fraud.expired == (0.0, pytest.approx(1 / 3))
    assert rows["order_lookup"].offered_in_target == (1.0, 1.0)
    assert rows[ALL].handoffs == (4, 4)
    assert rows[ALL].offered_in_target == (0.25, 0.75)
    assert rows[ALL].proficient_in_target == (0.25, 0.5)


def test_the_default_scenarios_yardsticks_count_who_meets_each_floor() -> None:
    sticks, scale = yardsticks(scenarios.load())
    # Billing disputes: the bot asks billing 3, the policy's floor is 4.
    assert sticks["billing_dispute"].proficient == {"billing-specialist"}
    assert sticks["fraud"].proficient == {"fraud-team"}
    assert sticks["novel_product_question"].proficient == {"policy-product"}  # product 3+
    assert sticks["standard_refund"].proficient == {
        "generalist",
        "billing-specialist",
        "policy-product",
        "fraud-team",
    }
    assert sticks["fraud"].target == pytest.approx(0.5)  # the policy file's, at 60x
    assert scale["CRITICAL"] == 0.25


def test_detection_counts_the_completions_between_a_drop_and_its_flag() -> None:
    seen = Observations(
        started=1000.0,
        outcomes=[
            OutcomeRecord("billing", True, 1005.0),  # before the drop at 10 s
            OutcomeRecord("billing", False, 1011.0),
            OutcomeRecord("billing", False, 1012.0),
            OutcomeRecord("billing", True, 1013.0),
            OutcomeRecord("billing", False, 1020.0),  # after the flag
            OutcomeRecord("lookup", True, 1012.0),
        ],
        alerts=[
            AlertRecord("billing", "QUALITY_METRIC_RESOLUTION_RATE", "POOL", False, 1014.5),
            AlertRecord("lookup", "QUALITY_METRIC_RESOLUTION_RATE", "POOL", False, 1016.0),
            AlertRecord("lookup", "QUALITY_METRIC_RESOLUTION_RATE", "POOL", True, 1017.0),
        ],
    )
    (found,), false = detections(seen, [Drop("billing", 10.0, 0.9, 0.4, 0.8, 0.5)])
    assert found.flagged_after == pytest.approx(4.5)
    assert found.metric == RESOLUTION
    assert (found.resolution_flagged_after, found.csat_flagged_after) == (pytest.approx(4.5), None)
    assert (found.completions_until_flag, found.completions_after_change) == (3, 4)
    assert (found.satisfied_before, found.satisfied_after) == (0.8, 0.5)
    assert (found.ratings_until_flag, found.ratings_after_change) == (0, 0)
    assert [a.interaction_type for a in false] == ["lookup"]  # raised, not the clearing
    (never,), _ = detections(Observations(started=0.0), [Drop("fraud", 5.0, 0.9, 0.1, 0.8, 0.3)])
    assert never.flagged_after is None
    assert never.metric is None
    assert never.completions_until_flag is None
    assert never.ratings_until_flag is None


def rating(kind: str, csat: int, completed: float, at: float, **fields: object) -> RatingRecord:
    return RatingRecord(
        interaction_type=kind,
        urgency=str(fields.get("urgency", "NORMAL")),
        resolved=bool(fields.get("resolved", True)),
        csat=csat,
        contacted_again=bool(fields.get("contacted_again", False)),
        completed=completed,
        at=at,
    )


def test_detection_counts_a_csat_flag_and_the_ratings_before_it() -> None:
    seen = Observations(
        started=1000.0,
        outcomes=[OutcomeRecord("billing", True, t) for t in (1005.0, 1011.0, 1013.0, 1030.0)],
        ratings=[
            rating("billing", 5, completed=1005.0, at=1012.0),  # its interaction before the drop
            rating("billing", 2, completed=1011.0, at=1014.0),
            rating("billing", 1, completed=1013.0, at=1016.0),
            rating("billing", 1, completed=1030.0, at=1033.0),  # after the flag
            rating("lookup", 1, completed=1011.0, at=1012.0),  # another type
        ],
        alerts=[
            AlertRecord("billing", "QUALITY_METRIC_RESOLUTION_RATE", "POOL", False, 1008.0),
            AlertRecord("billing", "QUALITY_METRIC_CSAT_SATISFIED", "BASELINE", False, 1020.0),
            AlertRecord("billing", "QUALITY_METRIC_RESOLUTION_RATE", "POOL", False, 1025.0),
        ],
    )
    drop = Drop("billing", 10.0, 0.9, 0.9, 0.8, 0.3)  # customers unhappier, as many resolved
    (found,), false = detections(seen, [drop])
    # The resolution flag before the change is not this drop's; the CSAT flag is its first.
    assert (found.flagged_after, found.metric) == (pytest.approx(10.0), CSAT)
    assert found.csat_flagged_after == pytest.approx(10.0)
    assert found.resolution_flagged_after == pytest.approx(15.0)
    assert (found.completions_until_flag, found.completions_after_change) == (2, 3)
    assert (found.ratings_until_flag, found.ratings_after_change) == (2, 3)
    assert false == []


def test_rows_count_the_ratings_with_their_mean_and_satisfied_share() -> None:
    seen = Observations(
        handoffs=[handoff("fraud", "HIGH", 1.0), handoff("fraud", "LOW", 2.0)],
        ratings=[
            rating("fraud", 5, 0, 1, urgency="HIGH"),
            rating("fraud", 4, 0, 1, urgency="HIGH"),
            rating("fraud", 1, 0, 1, urgency="HIGH", resolved=False),
            rating("fraud", 3, 0, 1, urgency="LOW"),
        ],
    )
    rows = {(r.interaction_type, r.urgency): r for r in summarize("s", 60, seen).rows}
    high, low, fraud = rows[("fraud", "HIGH")], rows[("fraud", "LOW")], rows[("fraud", ALL)]
    assert (high.ratings, high.csat_mean, high.satisfied) == (3, pytest.approx(10 / 3), 2 / 3)
    assert (low.ratings, low.csat_mean, low.satisfied) == (1, 3.0, 0.0)
    assert (fraud.ratings, fraud.csat_mean, fraud.satisfied) == (4, 3.25, 0.5)
    assert rows[(ALL, ALL)].ratings == 4
    unrated = summarize("s", 60, Observations(handoffs=[handoff("fraud", "HIGH", 1.0)])).rows[0]
    assert (unrated.ratings, unrated.csat_mean, unrated.satisfied) == (0, None, None)
    row = summarize("s", 60, seen).to_json()["by_type_and_urgency"][0]
    assert (row["ratings"], row["csat_mean"], row["satisfied"]) == (4, 3.25, 0.5)


def test_observations_merge_the_ratings() -> None:
    seen = Observations(ratings=[rating("fraud", 5, 0, 1)])
    seen.merge(Observations(ratings=[rating("fraud", 1, 0, 2)]))
    assert [r.csat for r in seen.ratings] == [5, 1]


def test_a_change_sets_the_resolution_rate_from_its_moment() -> None:
    scenario = scenarios.load()
    changed = scenario.model_copy(
        update={
            "changes": [
                Change(at=30, interaction_type="fraud", resolve=0.5),
                Change(at=60, interaction_type="fraud", group="fraud-team", resolve=0.2),
            ]
        }
    )
    assert changed.resolve_rate("fraud", "fraud-team", 10) == 0.9  # the type's
    assert changed.resolve_rate("fraud", "fraud-team", 45) == 0.5
    assert changed.resolve_rate("fraud", "fraud-team", 61) == 0.2
    assert changed.resolve_rate("fraud", "generalist", 61) == 0.5  # not that group's change
    assert changed.resolve_rate("order_lookup", "generalist", 61) == 0.9
