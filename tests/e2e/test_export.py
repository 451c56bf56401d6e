"""`humanline export` as a user runs it: a server, a tiny simulated crowd, and the outcomes
written as JSON lines, one per completed handoff, with the fields a retraining job reads."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.process import StartServer
from tests.e2e.test_simulate import TINY, simulate

pytestmark = pytest.mark.e2e


async def export(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "humanline",
        "export",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_outcomes_are_exported_as_json_lines(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    keys = server.env["HUMANLINE_AUTH_KEYS"]
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    code, out, err = await simulate(
        str(scenario), "--target", server.target, "--keys", keys, "--json", "--quiet"
    )
    assert code == 0, err
    summary = json.loads(out)
    completed = sum(
        r["answered"] for r in summary["by_type_and_urgency"] if r["urgency"] == "all"
        and r["interaction_type"] != "all"
    )  # fmt: skip

    code, out, err = await export(
        "--target", server.target, "--keys", keys, "--since", "1h", "--json"
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == completed > 0
    assert err.strip() == f"{completed} outcomes exported"
    for record in records:
        assert record["state"] == "HANDOFF_STATE_COMPLETED"
        assert record["outcome"] in ("OUTCOME_RESOLVED", "OUTCOME_UNRESOLVED")
        assert {"handoff_id", "interaction_type", "summary", "reason", "routing"} <= set(record)
        assert record["agent_id"].startswith("sim-")
    ends = [r["end_time"] for r in records]
    assert ends == sorted(ends)  # oldest first

    code, out, _ = await export(
        "--target", server.target, "--keys", keys, "--since", "1h", "--only-failures", "--json"
    )
    assert code == 0
    failures = [json.loads(line) for line in out.splitlines()]
    # A failure: not resolved, or (the simulated customers rate) rated 1 or 2, or the
    # customer contacted again.
    assert [r["handoff_id"] for r in failures] == [r["handoff_id"] for r in records if _failed(r)]
    assert all(_failed(r) for r in failures)

    code, _, err = await export("--target", server.target, "--keys", keys, "--since", "soon")
    assert code == 2
    assert "ISO 8601" in err


def _failed(record: dict[str, Any]) -> bool:
    feedback = record.get("feedback", {})
    return (
        record["outcome"] != "OUTCOME_RESOLVED"
        or feedback.get("csat", 5) <= 2
        or bool(feedback.get("contacted_again"))
    )
