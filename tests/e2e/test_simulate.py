"""`humanline simulate` as a user runs it: a server in one process, the simulator in another
(with agent processes of its own), a tiny scenario; its counts (handoffs, offers, customers'
ratings) checked against the server's own log of what happened."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.process import StartServer

pytestmark = pytest.mark.e2e

TINY = """
name = "tiny"

[run]
duration = 8
drain = 20
seed = 3

[[types]]
name = "order_lookup"
per_minute = 120
urgency = { LOW = 1, HIGH = 1 }
skills = { orders = 1 }
handle = 0.3

[[types]]
name = "fraud"
per_minute = 40
skills = { fraud = 3 }
handle = { uniform = [0.2, 0.6] }
patience = 0.3   # about as long as the crew takes to accept: some customers leave

# Six agents declining a quarter of their offers: some declines in every run (all but
# certain), and hardly ever a handoff that all six declined (it would wait for good).
[[agents]]
name = "crew"
count = 6
skills = { orders = 2, fraud = 4 }
accept_delay = { uniform = [0.1, 0.5] }
decline = 0.25
"""


async def simulate(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "humanline",
        "simulate",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)  # ends by itself
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_tiny_scenario_counts_what_the_server_saw(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    picture = tmp_path / "run.png"
    code, out, err = await simulate(
        str(scenario),
        "--target",
        server.target,
        "--keys",
        server.env["HUMANLINE_AUTH_KEYS"],
        "--json",
        "--plot",
        str(picture),
    )
    assert code == 0, err
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    summary = json.loads(out)
    assert set(summary) == {
        "scenario",
        "duration_seconds",
        "by_type_and_urgency",
        "occupancy",
        "errors",
        "early_warning",
    }
    # No change in the scenario, and one type's quality like the other's: nothing flagged.
    assert summary["early_warning"] == {"detections": [], "false_alarms": 0, "alerts": []}
    assert (summary["scenario"], summary["duration_seconds"], summary["errors"]) == ("tiny", 8, {})
    rows = {(r["interaction_type"], r["urgency"]): r for r in summary["by_type_and_urgency"]}
    assert set(rows) >= {("order_lookup", "all"), ("fraud", "all"), ("all", "all")}
    total = rows[("all", "all")]

    events = Counter(e["event"] for e in server.log_events())
    # Every handoff the server queued is in the summary, and only those; each ended.
    assert total["handoffs"] == events["handoff_queued"] > 0
    assert total["handoffs"] == sum(r["handoffs"] for (t, u), r in rows.items() if u == "all" != t)
    assert total["unfinished"] == 0
    # Answered ones were completed; abandoned ones cancelled; offers as the server logged them.
    assert total["answered"] == events["interaction_completed"] == events["offer_accepted"]
    abandoned = round(total["abandoned"] * total["handoffs"])
    assert abandoned == events["handoff_cancelled"]
    assert total["answered"] + abandoned == total["handoffs"]
    assert total["offers_accepted"] == events["offer_accepted"]
    assert total["offers_declined"] == events["offer_declined"] > 0
    assert total["offers_missed"] == events["offer_expired"] == 0
    p50, p99 = total["time_to_agent_p50"], total["time_to_agent_p99"]
    assert 0 < p50 <= p99 < 10
    # The crew logged in for the run and worked part of it.
    (crew,) = [o for o in summary["occupancy"] if o["group"] == "crew"]
    assert crew["agents"] == 6
    assert 6 * 8 <= crew["online_seconds"] <= 6 * 40
    assert 0 < crew["occupancy"] < 1
    # The simulated agents were removed again.
    assert events["agent_created"] == events["agent_deleted"] == 6
    # Customers rated some of the completed interactions (60% by default), each once: what
    # the server recorded, and no call refused (errors above: none).
    assert 0 < total["ratings"] == events["feedback_recorded"] <= total["answered"]
    assert 1 <= total["csat_mean"] <= 5
    assert total["ratings"] == sum(r["ratings"] for (t, u), r in rows.items() if u == "all" != t)


async def test_a_bad_scenario_is_refused_in_one_line(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(TINY.replace("per_minute = 120", "per_minute = -1"))
    code, out, err = await simulate(str(scenario), "--target", "127.0.0.1:9")
    assert code == 2
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "types.0.per_minute: Input should be greater than 0" in err


async def test_no_server_is_said_plainly(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    code, _, err = await simulate(str(scenario), "--target", "127.0.0.1:9", "--quiet")
    assert code == 2
    assert "could not create the simulated agents: UNAVAILABLE" in err
