"""`make run` serves on the embedded store, as the README promises.

Runs the real `make run` from the repository root, in a process group of its own, with
HUMANLINE_LISTEN and HUMANLINE_DATABASE_URL from the environment (the Makefile exports them),
waits for health SERVING, reads the banner, makes one request, then stops the whole group the
way Ctrl-C in a terminal does (SIGINT to the foreground group) and checks nothing is left.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest

from humanline.v1 import handoff_pb2
from tests.e2e.helpers import eventually
from tests.e2e.process import (
    REPO,
    START_TIMEOUT,
    STOP_TIMEOUT,
    clean_environ,
    connect,
    free_port,
    group_members,
    kill_group,
    tail,
    wait_serving,
)

pytestmark = pytest.mark.e2e

# `make run` may first (re)install the virtualenv when pyproject.toml or the lock changed.
MAKE_START_TIMEOUT = max(START_TIMEOUT, 300.0)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not on PATH")
async def test_make_run_serves_on_the_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "data" / "make-run.db"
    env = clean_environ()
    env["HUMANLINE_LISTEN"] = f"127.0.0.1:{port}"
    env["HUMANLINE_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
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
        assert f"(store: sqlite+aiosqlite:///{database})" in banner, describe()
        assert database.exists()  # the embedded store, where we asked for it

        stubs = connect(f"127.0.0.1:{port}")
        try:
            handoff = await stubs.request_handoff(summary="make run works")
            assert handoff.state == handoff_pb2.HANDOFF_STATE_QUEUED
            assert (await stubs.get_handoff(handoff.handoff_id)).handoff_id == handoff.handoff_id
        finally:
            await stubs.close()
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
