"""Scenario files: the default one, distributions, and errors that name their place."""

from __future__ import annotations

import random
import re
import statistics
from pathlib import Path

import pytest

from humanline.sim.players import streams
from humanline.sim.scenario import (
    CSAT_RESOLVED,
    CSAT_UNRESOLVED,
    Constant,
    Exponential,
    LogNormal,
    Scenario,
    ScenarioError,
    Uniform,
    draw_csat,
    load,
    parse,
    with_run,
)

MINIMAL = """
[[types]]
name = "order_lookup"
per_minute = 30
skills = { orders = 1 }
handle = 5

[[agents]]
name = "crew"
count = 3
skills = { orders = 2 }
"""


def test_the_default_scenario_models_the_six_interaction_types() -> None:
    scenario = load()
    assert [t.name for t in scenario.types] == [
        "order_lookup",
        "standard_refund",
        "billing_dispute",
        "policy_edge_case",
        "novel_product_question",
        "fraud",
    ]
    rate = {t.name: t.per_minute for t in scenario.types}
    patience = {t.name: t.patience.mean for t in scenario.types if t.patience}
    # Routine work is most of the volume; customers with a fraud concern wait least.
    assert rate["order_lookup"] + rate["standard_refund"] > sum(rate.values()) / 2
    assert min(patience, key=patience.__getitem__) == "fraud"
    # The pool can carry the offered load even with a quarter of it logged out.
    slots = sum(g.count * g.capacity for g in scenario.agents)
    assert scenario.offered_load() < 0.75 * slots


def test_a_minimal_scenario_takes_the_defaults() -> None:
    scenario = parse(MINIMAL)
    kind, group = scenario.types[0], scenario.agents[0]
    assert kind.handle == Constant(constant=5)
    assert kind.urgency == {"NORMAL": 1.0}
    assert kind.patience is None  # customers wait as long as it takes
    assert (group.capacity, group.languages, group.online) == (1, ["en"], None)
    assert scenario.run.duration == 60
    assert scenario.offered_load() == pytest.approx(30 / 60 * 5)
    # Customers rate by default: 60% of them, a few seconds after the interaction.
    assert (kind.rate, kind.rate_delay) == (0.6, Uniform(uniform=(1, 5)))
    assert (kind.csat_resolved, kind.csat_unresolved) == (CSAT_RESOLVED, CSAT_UNRESOLVED)
    assert (kind.contacted_again_resolved, kind.contacted_again_unresolved) == (0.05, 0.6)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("7", Constant(constant=7)),
        ("2.5", Constant(constant=2.5)),
        ("{ exponential = 20 }", Exponential(exponential=20)),
        ("{ uniform = [1, 3] }", Uniform(uniform=(1, 3))),
        ("{ lognormal = 6, sigma = 0.7 }", LogNormal(lognormal=6, sigma=0.7)),
    ],
)
def test_distributions_are_written_as_numbers_or_tables(written: str, expected: object) -> None:
    scenario = parse(MINIMAL.replace("handle = 5", f"handle = {written}"))
    assert scenario.types[0].handle == expected


@pytest.mark.parametrize(
    "distribution",
    [
        Exponential(exponential=8),
        Uniform(uniform=(2, 6)),
        LogNormal(lognormal=8, sigma=0.9),
        Constant(constant=3),
    ],
)
def test_samples_have_the_stated_mean(distribution: Exponential) -> None:
    rng = random.Random(7)
    samples = [distribution.sample(rng) for _ in range(40_000)]
    assert min(samples) >= 0
    assert statistics.fmean(samples) == pytest.approx(distribution.mean, rel=0.03)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("handle = 5", "handle = { gamma = 2 }"), "types.0.handle: expected a number or one of"),
        (("handle = 5", "handle = -1"), "types.0.handle.constant: Input should be greater"),
        (("handle = 5", "handle = { uniform = [3, 1] }"), "uniform needs 0 <= low <= high"),
        (("per_minute = 30", "per_minute = 0"), "types.0.per_minute: Input should be greater"),
        (("per_minute = 30", "per_minute = 30\nspeed = 2"), "types.0.speed: Extra inputs"),
        (("count = 3", "count = 3\ndecline = 0.6\nmiss = 0.6"), "decline + miss must not exceed"),
        (("orders = 1 }", "orders = 3 }"), "no agent group can take interaction type"),
        (("orders = 1 }", "orders = 9 }"), "types.0.skills.orders: Input should be less"),
        (('name = "order_lookup"', 'name = "Order Lookup"'), "types.0.name: String should match"),
        (("handle = 5", "handle = 5\nrate = 1.5"), "types.0.rate: Input should be less than"),
        (
            ("handle = 5", "handle = 5\ncsat_resolved = [1, 2, 3, 4]"),
            "types.0.csat_resolved: Value error, needs five weights, of the ratings 1 to 5 (got 4)",
        ),
        (
            ("handle = 5", "handle = 5\ncsat_unresolved = [1, 2, -3, 4, 5]"),
            "types.0.csat_unresolved: Value error, CSAT weights (of ratings 1 to 5) must be >= 0",
        ),
        (
            ("handle = 5", "handle = 5\ncsat_resolved = [0, 0, 0, 0, 0]"),
            "types.0.csat_resolved: Value error, CSAT weights",
        ),
        (
            ("handle = 5", "handle = 5\nrate_delay = { uniform = [5, 1] }"),
            "uniform needs 0 <= low <= high",
        ),
        (
            ("handle = 5", "handle = 5\ncontacted_again_unresolved = 2"),
            "types.0.contacted_again_unresolved: Input should be less than",
        ),
        (
            ("", '[[changes]]\nat = 5\ninteraction_type = "order_lookup"\n'),
            "changes.0: Value error, a change needs resolve, csat_resolved or csat_unresolved",
        ),
        (
            ("", '[[changes]]\nat = 5\ninteraction_type = "order_lookup"\nsatisfied = 0.2\n'),
            "changes.0.satisfied: Extra inputs are not permitted",
        ),
        (
            ("", '[[changes]]\nat = 5\ninteraction_type = "order_lookup"\ncsat_resolved = 3\n'),
            "changes.0.csat_resolved: Input should be a valid tuple",
        ),
        (
            ("", '[[changes]]\nat = 5\ninteraction_type = "fraud"\nresolve = 0.5\n'),
            "a change names unknown type 'fraud'",
        ),
    ],
)
def test_a_bad_scenario_names_each_problem_and_its_place(
    change: tuple[str, str], message: str
) -> None:
    old, new = change
    text = MINIMAL.replace(old, new) if old else MINIMAL + new
    with pytest.raises(ScenarioError, match="^<scenario>: .*" + re.escape(message)):
        parse(text)


def test_every_problem_is_named_at_once() -> None:
    text = MINIMAL.replace("per_minute = 30", "per_minute = 0").replace("count = 3", "count = 0")
    with pytest.raises(ScenarioError) as raised:
        parse(text)
    assert "types.0.per_minute" in str(raised.value)
    assert "agents.0.count" in str(raised.value)


def test_files_that_cannot_be_read_are_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"missing\.toml: No such file"):
        load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[types]\n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load(broken)
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    assert isinstance(load(good), Scenario)


def test_run_settings_from_the_command_line_are_validated_as_in_a_file() -> None:
    scenario = parse(MINIMAL)
    changed = with_run(scenario, duration=5, drain=None, seed=9)
    assert (changed.run.duration, changed.run.drain, changed.run.seed) == (5, 30, 9)
    assert changed.types == scenario.types
    with pytest.raises(ScenarioError, match=r"^--duration: duration: Input should be greater"):
        with_run(scenario, duration=-1, drain=None)


# --- customers' ratings --------------------------------------------------------------------

RATED = (
    MINIMAL.replace(
        "handle = 5",
        "handle = 5\nrate = 0.7\nrate_delay = { uniform = [2, 4] }\n"
        "csat_resolved = [0, 1, 1, 3, 5]\ncsat_unresolved = [6, 2, 1, 1, 0]\n"
        "contacted_again_resolved = 0.1\ncontacted_again_unresolved = 0.8",
    )
    + """
[[agents]]
name = "night"
count = 1
skills = { orders = 2 }

# From 30 s, customers whose issue was resolved are less pleased; from 60 s, only the night
# shift's unresolved customers are angrier still, and the night shift resolves less.
[[changes]]
at = 30
interaction_type = "order_lookup"
csat_resolved = [2, 2, 2, 2, 2]

[[changes]]
at = 60
interaction_type = "order_lookup"
group = "night"
resolve = 0.5
csat_unresolved = [1, 0, 0, 0, 0]
"""
)


def test_ratings_and_their_changes_are_read_from_the_file() -> None:
    scenario = parse(RATED)
    kind = scenario.types[0]
    assert (kind.rate, kind.rate_delay) == (0.7, Uniform(uniform=(2, 4)))
    assert kind.csat_resolved == (0, 1, 1, 3, 5)
    assert (kind.contacted_again_resolved, kind.contacted_again_unresolved) == (0.1, 0.8)
    first, second = scenario.changes
    assert (first.resolve, first.csat_unresolved) == (None, None)  # unchanged: as before
    assert (second.group, second.resolve) == ("night", 0.5)
    weights = scenario.csat_weights
    assert weights("order_lookup", "crew", 29, True) == (0, 1, 1, 3, 5)  # the type's
    assert weights("order_lookup", "crew", 30, True) == (2, 2, 2, 2, 2)
    assert weights("order_lookup", "crew", 30, False) == (6, 2, 1, 1, 0)
    assert weights("order_lookup", "night", 61, True) == (2, 2, 2, 2, 2)  # the first still
    assert weights("order_lookup", "night", 61, False) == (1, 0, 0, 0, 0)
    assert weights("order_lookup", "crew", 61, False) == (6, 2, 1, 1, 0)  # not the crew's
    # A change of ratings alone keeps the resolution rate; the second changes both.
    assert scenario.resolve_rate("order_lookup", "crew", 61) == 0.9
    assert scenario.resolve_rate("order_lookup", "night", 61) == 0.5


def test_each_change_is_reported_with_its_expected_csat_score() -> None:
    scenario = parse(RATED)
    first, second = scenario.drops()
    # Before 30 s: 90% resolved, of them 8 in 10 satisfied; unresolved ones 1 in 10.
    assert (first.at, first.resolve_before, first.resolve_after) == (30, 0.9, 0.9)
    assert first.satisfied_before == pytest.approx(0.9 * 0.8 + 0.1 * 0.1)
    assert first.satisfied_after == pytest.approx(0.9 * 0.4 + 0.1 * 0.1)
    # The night shift's change: half resolved, the unresolved never satisfied.
    assert (second.interaction_type, second.resolve_before, second.resolve_after) == (
        "order_lookup",
        0.9,
        0.5,
    )
    assert second.satisfied_before == pytest.approx(0.9 * 0.4 + 0.1 * 0.1)
    assert second.satisfied_after == pytest.approx(0.5 * 0.4)


def test_a_rating_follows_the_weights_and_never_a_zero_weight() -> None:
    weights = (0.0, 1.0, 0.0, 3.0, 0.0)
    assert [draw_csat(u, weights) for u in (0.0, 0.24, 0.25, 0.99, 0.999999999)] == [2, 2, 4, 4, 4]
    assert draw_csat(0.5, (0.0, 0.0, 0.0, 0.0, 2.0)) == 5


def test_a_customers_rating_is_the_same_in_every_run_of_the_seed() -> None:
    scenario = parse(RATED)

    def rating(seed: int, customer: str, resolved: bool = True) -> object:
        return scenario.rating(
            streams(seed, "rating", customer), "order_lookup", "crew", 10, resolved
        )

    customers = [f"sim-customer-{n}" for n in range(200)]
    first = [rating(1, c) for c in customers]
    assert [rating(1, c) for c in customers] == first
    assert [rating(2, c) for c in customers] != first
    # Whether a customer rates and when does not hang on the interaction's outcome, and a
    # customer rates an unresolved issue no higher than a resolved one (one draw, read off
    # both distributions).
    for customer in customers:
        happy, unhappy = rating(1, customer, True), rating(1, customer, False)
        assert (happy is None) == (unhappy is None)
        if happy is not None and unhappy is not None:
            assert happy.delay == unhappy.delay  # type: ignore[attr-defined]
            assert happy.csat >= unhappy.csat  # type: ignore[attr-defined]


@pytest.mark.parametrize("resolved", [True, False])
def test_ratings_honour_the_types_distributions_over_many_customers(resolved: bool) -> None:
    scenario = parse(RATED)
    kind = scenario.types[0]
    n = 20_000
    drawn = [
        scenario.rating(streams(4, "rating", str(c)), "order_lookup", "crew", 10, resolved)
        for c in range(n)
    ]
    ratings = [r for r in drawn if r is not None]
    assert len(ratings) / n == pytest.approx(kind.rate, abs=0.015)
    weights = kind.csat_resolved if resolved else kind.csat_unresolved
    counts = [sum(r.csat == score for r in ratings) for score in range(1, 6)]
    for count, weight in zip(counts, weights, strict=True):
        assert count / len(ratings) == pytest.approx(weight / sum(weights), abs=0.015)
        if weight == 0:
            assert count == 0
    again = kind.contacted_again_resolved if resolved else kind.contacted_again_unresolved
    assert statistics.fmean(r.contacted_again for r in ratings) == pytest.approx(again, abs=0.015)
    delays = [r.delay for r in ratings]
    assert min(delays) >= 2
    assert max(delays) <= 4
    assert statistics.fmean(delays) == pytest.approx(3, abs=0.03)
    # Later, the change's weights for the resolved (the unresolved keep the type's).
    later = [
        scenario.rating(streams(4, "rating", str(c)), "order_lookup", "crew", 45, resolved)
        for c in range(n)
    ]
    satisfied = statistics.fmean(r.csat >= 4 for r in later if r is not None)
    assert satisfied == pytest.approx(0.4 if resolved else 0.1, abs=0.015)
