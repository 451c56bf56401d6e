"""The early warning as a user meets it: `humanline serve` in one process, `humanline
simulate` in another, a scenario whose one interaction type starts failing part way. The
server's alert stream flags that type within a few dozen of its completions after the drop,
and a run of the same scenario without the drop raises no flag at all. A type whose
customers turn unhappy (as many resolved, rated worse) is flagged for its CSAT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.process import StartServer
from tests.e2e.test_simulate import simulate

pytestmark = pytest.mark.e2e

# Two types at the same resolution rate, many short interactions: about 4 a second each.
STEADY = """
name = "quality"

[run]
duration = 24
drain = 10
seed = 5

[[types]]
name = "refund"
per_minute = 240
skills = { billing = 1 }
handle = 0.3
resolve = 0.9

[[types]]
name = "dispute"
per_minute = 240
skills = { billing = 1 }
handle = 0.3
resolve = 0.9

[[agents]]
name = "crew"
count = 8
skills = { billing = 3 }
accept_delay = { uniform = [0.05, 0.2] }
"""
DROP = """
[[changes]]
at = 6
interaction_type = "dispute"
resolve = 0.3
"""
SETTINGS = {"HUMANLINE_QUALITY_WINDOW_SECONDS": "12", "HUMANLINE_QUALITY_CHECK_SECONDS": "1"}
# The stated bound: 30 completions are the least any flag needs; the drop from 90% to 30%
# shows within about as many again.
WITHIN = 60


async def _play(start_server: StartServer, scenario: Path) -> dict[str, object]:
    server = await start_server(**SETTINGS)
    code, out, err = await simulate(
        str(scenario), "--target", server.target, "--keys", server.env["HUMANLINE_AUTH_KEYS"],
        "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    report: dict[str, object] = json.loads(out)["early_warning"]
    return report


async def test_a_failing_type_is_flagged_soon_and_a_steady_run_not_at_all(
    start_server: StartServer, tmp_path: Path
) -> None:
    failing = tmp_path / "failing.toml"
    failing.write_text(STEADY + DROP)
    found = await _play(start_server, failing)
    (drop,) = found["detections"]  # type: ignore[misc]
    assert drop["interaction_type"] == "dispute"
    assert drop["completions_until_flag"] is not None, found
    assert drop["completions_until_flag"] <= WITHIN, found
    assert found["false_alarms"] == 0, found

    steady = tmp_path / "steady.toml"
    steady.write_text(STEADY)
    quiet = await _play(start_server, steady)
    assert quiet["alerts"] == [], quiet


# Every customer rates, at once (the server judges the handoffs of the window that have a
# rating: late ones would thin it); from 6 s on, disputes resolved as before are rated 1 or 2.
RATING = "resolve = 0.9\nrate = 1\nrate_delay = 0.2"
UNHAPPY = """
[[changes]]
at = 6
interaction_type = "dispute"
csat_resolved = [1, 1, 0, 0, 0]
"""


async def test_customers_turning_unhappy_are_flagged_for_csat(
    start_server: StartServer, tmp_path: Path
) -> None:
    unhappy = tmp_path / "unhappy.toml"
    unhappy.write_text(STEADY.replace("resolve = 0.9", RATING) + UNHAPPY)
    found = await _play(start_server, unhappy)
    (drop,) = found["detections"]  # type: ignore[misc]
    assert drop["interaction_type"] == "dispute"
    assert (drop["resolve_before"], drop["resolve_after"]) == (0.9, 0.9)
    assert drop["satisfied_before"] > 0.7 > 0.1 > drop["satisfied_after"]
    assert drop["csat_flagged_after"] is not None, found
    assert drop["metric"] == "QUALITY_METRIC_CSAT_SATISFIED", found
    # Flagged on ratings after the drop (the window's others came before it).
    assert 0 < drop["ratings_until_flag"] <= drop["ratings_after_change"], found
    assert found["false_alarms"] == 0, found
