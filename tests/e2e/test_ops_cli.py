"""The ops commands as an operator runs them: `humanline pool`, `agents`, `quality` and
`export` in processes of their own against a real server, in both forms: tables for people,
`--json` for scripts. The live `pool` view runs in a pseudo-terminal, as in a shell, and must
redraw when the pool changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from humanline.client import AgentClient, HandoffClient, PoolClient
from humanline.domain.access import Principal, Role
from tests.e2e.conftest import StartServer
from tests.e2e.process import KEYS, ServerProcess, clean_environ, interruptible

pytestmark = pytest.mark.e2e

OPS = KEYS.issue(Principal(Role.OPS, "ops"))
BOT = KEYS.issue(Principal(Role.BOT, "cli-bot"))


async def humanline(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """Runs `python -m humanline ARGS`; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "humanline",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_environ(), **(env or {})},
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
async def served(start_server: StartServer) -> ServerProcess:
    """A server with two agents (one logged in), one handoff completed and rated, and one
    waiting in the queue."""
    server = await start_server()
    async with PoolClient(server.target, token=OPS) as pool:
        await pool.create_agent("ana", display_name="Ana", skills={"billing": 4}, languages=["en"])
        await pool.create_agent("ben", display_name="Ben", skills={"tech": 3}, languages=["de"])
    agent_token = KEYS.issue(Principal(Role.AGENT, "ana"))
    async with (
        AgentClient("ana", server.target, token=agent_token) as ana,
        HandoffClient(server.target, token=BOT) as bots,
    ):
        done = await bots.request_handoff(
            conversation_id="c-1", customer_id="u-1", interaction_type="billing_dispute"
        )
        async for offer in ana.offers():
            interaction = await ana.accept(offer)
            await ana.complete(interaction, outcome="unresolved", disposition_code="escalate")
            break
        await bots.record_feedback(done.handoff_id, csat=2, reason_tags=["slow"])
        await bots.request_handoff(
            conversation_id="c-2",
            customer_id="u-2",
            interaction_type="tech_support",
            skills={"tech": 2},
        )  # nobody with the skill is online: it waits
    return server


async def test_agents_lists_the_pool_as_a_table_and_as_json(served: ServerProcess) -> None:
    code, out, err = await humanline("agents", "--target", served.target, "--token", OPS)
    assert code == 0, err
    assert "2 agents" in out
    assert "Ana" in out
    assert "billing 4" in out
    assert "offline" in out

    code, out, err = await humanline("agents", "--json", "--target", served.target, "--token", OPS)
    assert code == 0, err
    agents = lines(out)
    assert [a["agent_id"] for a in agents] == ["ana", "ben"]
    assert agents[0]["skills"] == [{"skill": "billing", "proficiency": 4}]
    assert {a["state"] for a in agents} == {"AGENT_STATE_OFFLINE"}
    assert agents[1]["load"] == 0  # zeros are spelled out for scripts

    # The keyring beside the server signs an ops token; filters go to the server.
    keys = served.env["HUMANLINE_AUTH_KEYS"]
    code, out, err = await humanline(
        "agents", "--json", "--skill", "tech", "--target", served.target, "--keys", keys
    )
    assert code == 0, err
    assert [a["agent_id"] for a in lines(out)] == ["ben"]


async def test_pool_once_shows_the_queue_and_the_agents(served: ServerProcess) -> None:
    env = {"HUMANLINE_TARGET": served.target, "HUMANLINE_TOKEN": OPS}  # as a shell sets them
    code, out, err = await humanline("pool", "--once", env=env)
    assert code == 0, err
    assert "queue: 1 waiting" in out
    assert "tech_support" in out

    code, out, err = await humanline("pool", "--once", "--json", env=env)
    assert code == 0, err
    (status,) = lines(out)
    assert status["queue_by_interaction_type"] == [{"interaction_type": "tech_support", "count": 1}]
    offline = {s["state"]: s["count"] for s in status["agents_by_state"]}["AGENT_STATE_OFFLINE"]
    assert offline == 2


async def test_quality_reports_per_group_in_both_forms(served: ServerProcess) -> None:
    base = ("--target", served.target, "--token", OPS)
    code, out, err = await humanline("quality", *base)
    assert code == 0, err
    assert "quality by interaction type" in out
    assert "billing_dispute" in out
    assert "tech_support" in out

    code, out, err = await humanline("quality", "--json", "--by", "agent", *base)
    assert code == 0, err
    (report,) = lines(out)
    (ana,) = [g for g in report["groups"] if g["key"] == "ana"]
    assert (ana["completed"], ana["resolved"], ana["csat_count"]) == (1, 0, 1)
    assert report["overall"]["handoffs"] == 2

    code, _, err = await humanline("quality", "--since", "yesterday-ish", *base)
    assert code == 2
    assert "ISO 8601" in err


async def test_export_prints_a_table_or_json_lines(served: ServerProcess) -> None:
    base = ("--target", served.target, "--token", OPS, "--since", "1h")
    code, out, err = await humanline("export", *base)
    assert code == 0, err
    assert "1 outcomes" in out
    assert "escalate" in out
    assert "unresolved" in out
    assert err.strip() == "1 outcomes exported"

    code, out, err = await humanline("export", "--json", "--only-failures", *base)
    assert code == 0, err
    (record,) = lines(out)
    assert (record["agent_id"], record["outcome"]) == ("ana", "OUTCOME_UNRESOLVED")
    assert record["feedback"]["csat"] == 2


async def test_refusals_are_one_line_and_exit_2(served: ServerProcess, tmp_path: Path) -> None:
    code, out, err = await humanline("agents", "--target", served.target, "--token", "nope")
    assert (code, out) == (2, "")
    assert err.startswith("humanline: error: UNAUTHENTICATED")
    # No token and no keyring here: the error says where a token goes.
    code, _, err = await humanline("agents", "--target", served.target, cwd=tmp_path)
    assert code == 2
    assert "TOKEN_MISSING" in err
    assert "--token or HUMANLINE_TOKEN" in err
    bot = ("--target", served.target, "--token", BOT)
    code, _, err = await humanline("pool", "--once", *bot)
    assert code == 2
    assert "PERMISSION_DENIED" in err
    code, _, err = await humanline("agents", "--state", "asleep", *bot)
    assert code == 2
    assert "invalid choice" in err


async def test_the_live_pool_view_redraws_when_an_agent_logs_in(served: ServerProcess) -> None:
    leader, follower = pty.openpty()
    env = {**clean_environ(), "COLUMNS": "120", "LINES": "60", "TERM": "xterm"}
    process = await asyncio.create_subprocess_exec(
        *interruptible(
            "-m", "humanline", "pool", "--target", served.target, "--token", OPS,
            "--interval", "0.2",
        ),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )  # fmt: skip
    os.close(follower)
    seen = bytearray()

    async def read_until(text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while text.encode() not in seen:
            assert time.monotonic() < deadline, f"no {text!r} in {seen.decode(errors='replace')}"
            with contextlib.suppress(OSError):
                seen.extend(await loop.run_in_executor(None, os.read, leader, 65536))

    try:
        await read_until("queue: 1 waiting")
        drawn = len(seen)
        token = KEYS.issue(Principal(Role.AGENT, "ben"))
        async with AgentClient("ben", served.target, token=token) as ben:
            # ben takes the waiting tech handoff: the view redraws with the queue empty.
            async for offer in ben.offers():
                await ben.accept(offer)
                break
            del seen[:drawn]
            await read_until("queue: 0 waiting")
            process.send_signal(signal.SIGINT)  # Ctrl-C
            assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(leader)


def test_a_reader_that_stops_early_is_no_error(served: ServerProcess) -> None:
    """`humanline agents --json | head -1`: the pipe closes before the output is written."""
    command = [sys.executable, "-m", "humanline", "agents", "--json", "--target", served.target]
    process = subprocess.Popen(
        [*command, "--token", OPS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
    )
    assert process.stdout is not None
    process.stdout.close()  # nobody reads: the first write fails with EPIPE
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert err.decode() == ""
