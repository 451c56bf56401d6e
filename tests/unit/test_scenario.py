"""Scenario files: the default one, distributions, and errors that name their place."""

from __future__ import annotations

import random
import re
import statistics
from pathlib import Path

import pytest

from humanline.sim.scenario import (
    Constant,
    Exponential,
    LogNormal,
    Scenario,
    ScenarioError,
    Uniform,
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
    ],
)
def test_a_bad_scenario_names_each_problem_and_its_place(
    change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ScenarioError, match="^<scenario>: .*" + re.escape(message)):
        parse(MINIMAL.replace(*change))


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
