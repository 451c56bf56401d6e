"""`make run` serves on the embedded store, as the README promises.

Runs the real `make run` from the repository root, in a process group of its own, with
HUMANLINE_LISTEN, HUMANLINE_DATABASE_URL and HUMANLINE_AUTH_KEYS from the environment (the
Makefile passes them on), waits for health SERVING, reads the banner, makes its keyring on
first start and prints tokens that work as printed (a newcomer's first try), refuses a call
without one, then stops the whole group the way Ctrl-C in a terminal does (SIGINT to the
foreground group) and checks nothing is left.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    handoff_pb2,
    handoff_service_pb2,
    handoff_service_pb2_grpc,
    pool_service_pb2,
    pool_service_pb2_grpc,
)
from tests.e2e.helpers import eventually
from tests.e2e.process import (
    REPO,
    START_TIMEOUT,
    STOP_TIMEOUT,
    channel,
    clean_environ,
    free_port,
    group_members,
    kill_group,
    tail,
    wait_serving,
)
from tests.support.client import handoff_request

pytestmark = pytest.mark.e2e

EXPORT = re.compile(r"export (\w+)=(\S+)")

# `make run` may first (re)install the virtualenv when pyproject.toml or the lock changed.
MAKE_START_TIMEOUT = max(START_TIMEOUT, 300.0)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not on PATH")
async def test_make_run_serves_on_the_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "data" / "make-run.db"
    env = clean_environ()
    env["HUMANLINE_LISTEN"] = f"127.0.0.1:{port}"
    env["HUMANLINE_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    keys = tmp_path / "data" / "keys.json"
    env["HUMANLINE_AUTH_KEYS"] = str(keys)
    out, err = tmp_path / "make.stdout", tmp_path / "make.stderr"

    def describe() -> str:
        return f"{tail(err)}\n{tail(out)}"

    with out.open("wb") as stdout, err.open("wb") as stderr:
        make = await asyncio.create_subprocess_exec(
            "make",
            "run",
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        await wait_serving(f"127.0.0.1:{port}", make, describe, timeout=MAKE_START_TIMEOUT)

        banner = err.read_text()
        assert f"is serving on 127.0.0.1:{port}" in banner, describe()
        assert f"(plain text; store: sqlite+aiosqlite:///{database})" in banner, describe()
        assert database.exists()  # the embedded store, where we asked for it

        assert stat.S_IMODE(keys.stat().st_mode) == 0o600  # made on first start, private
        tokens = dict(EXPORT.findall(banner))
        assert set(tokens) == {"OPS", "BOT", "ALICE"}, describe()
        async with channel(f"127.0.0.1:{port}") as ch:
            handoffs = handoff_service_pb2_grpc.HandoffServiceStub(ch)
            pool = pool_service_pb2_grpc.PoolServiceStub(ch)
            bot = (("authorization", f"Bearer {tokens['BOT']}"),)
            handoff = (
                await handoffs.RequestHandoff(
                    handoff_request(summary="make run works"), metadata=bot
                )
            ).handoff
            assert handoff.state == handoff_pb2.HANDOFF_STATE_QUEUED
            assert handoff.bot_id == "demo-bot"
            got = await handoffs.GetHandoff(
                handoff_service_pb2.GetHandoffRequest(handoff_id=handoff.handoff_id), metadata=bot
            )
            assert got.handoff.handoff_id == handoff.handoff_id
            ops = (("authorization", f"Bearer {tokens['OPS']}"),)
            status = await pool.GetPoolStatus(pool_service_pb2.GetPoolStatusRequest(), metadata=ops)
            assert sum(c.count for c in status.status.queue_by_urgency) == 1
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pool.GetPoolStatus(pool_service_pb2.GetPoolStatusRequest())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # ALICE's token opens alice's session, once ops have made her an agent: she is
            # offered the waiting handoff.
            await pool.CreateAgent(
                pool_service_pb2.CreateAgentRequest(
                    agent_id="alice",
                    agent=agent_pb2.Agent(
                        skills=[agent_pb2.AgentSkill(skill="general", proficiency=3)],
                        languages=["en"],
                        capacity=1,
                    ),
                ),
                metadata=ops,
            )
            alice = (("authorization", f"Bearer {tokens['ALICE']}"),)
            hello = agent_service_pb2.ConnectRequest(
                hello=agent_service_pb2.ConnectRequest.Hello(agent_id="alice")
            )
            done = asyncio.Event()

            async def app() -> AsyncIterator[agent_service_pb2.ConnectRequest]:
                yield hello
                await done.wait()  # the app's side stays open: closing it logs out

            session = agent_service_pb2_grpc.AgentServiceStub(ch).Connect(app(), metadata=alice)
            welcome = await session.read()
            assert welcome.welcome.agent.agent_id == "alice", welcome
            async with asyncio.timeout(10):
                message = await session.read()
                while not message.HasField("offer"):
                    message = await session.read()
            assert message.offer.details.handoff_id == handoff.handoff_id, message
            done.set()
            session.cancel()
    finally:
        # Ctrl-C: SIGINT to the whole foreground group, make and the server alike.
        stopped = await kill_group(make, signal.SIGINT, STOP_TIMEOUT)

    assert stopped, f"`make run` ignored SIGINT and was killed\n{describe()}"
    # Nothing of the group outlives make: no orphaned server holding the port.
    await eventually(
        lambda: asyncio.sleep(0, group_members(make.pid)),
        lambda members: not members,
        what="every process of make's group gone",
    )
    events = out.read_text()
    assert '"event": "service_stopped"' in events, describe()  # the server shut down cleanly
