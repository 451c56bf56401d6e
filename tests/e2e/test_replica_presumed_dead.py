"""A replica presumed dead by mistake, and revived: its agents must not lose their work.

A replica whose heartbeat lags past the TTL (a long pause, a saturated machine, a starved
connection pool) is declared dead by another one, which recovers its sessions: they enter the
grace period. When the paused replica runs again it finds out (`replica_was_declared_dead`),
takes its place again and asks every stream it holds to compare itself with the store, so
that streams whose sessions were recovered end with UNAVAILABLE and their agents resume,
keeping their accepted work (README: a resume within the grace period keeps the session and
its accepted interactions).

Seen in the multi-replica runs (tests/e2e/test_replicas.py) on a loaded machine with a 3 s
TTL: replicas declared each other dead for a minute; 215 agents lost their sessions while
their streams stayed open (resume then refused), and streams ended ABORTED/SESSION_REPLACED.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest

from humanline.v1 import agent_pb2
from tests.e2e.conftest import PostgresDatabase
from tests.e2e.helpers import failure, next_of, stream_end
from tests.e2e.process import ServerProcess, StartServer, connect
from tests.support.client import AgentDriver

pytestmark = pytest.mark.e2e

GRACE = 20.0
SETTINGS = {
    "HUMANLINE_REPLICA_HEARTBEAT_SECONDS": "1",
    "HUMANLINE_REPLICA_TTL_SECONDS": "10",
    "HUMANLINE_GRACE_PERIOD_SECONDS": str(GRACE),
    "HUMANLINE_OFFER_TIMEOUT_SECONDS": "60",
    "HUMANLINE_HEARTBEAT_INTERVAL_SECONDS": "60",  # no heartbeats needed within the test
}


async def wait_for(what: str, probe: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Polls `probe` until it says True; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


# The recovery of a replica presumed dead is one transaction with the verdict (its replica row
# marked stopped), so a replica that runs again learns of the verdict (its heartbeat waits for
# the row lock) only once its sessions are in their grace period, and its look at its streams
# then sees that; the recovery also hints every agent whose session it detached. Without that,
# the streams stayed open and silent while the pool showed the agent RECONNECTING, and when the
# grace period ended the agent's work was taken back and its resume refused. The test makes
# the recovery slow by holding a lock on the agent's session row while the replica is paused
# (SIGSTOP) past the TTL, resumes it (SIGCONT), then releases the lock.
async def test_agents_of_a_replica_presumed_dead_keep_their_work(
    own_postgres: PostgresDatabase, start_server: StartServer
) -> None:
    paused, other = await asyncio.gather(
        start_server(HUMANLINE_DATABASE_URL=own_postgres.url, **SETTINGS),
        start_server(HUMANLINE_DATABASE_URL=own_postgres.url, **SETTINGS),
    )
    a, b = connect(paused.target), connect(other.target)
    conn = await asyncpg.connect(own_postgres.dsn)
    locker = await asyncpg.connect(own_postgres.dsn)
    alice = AgentDriver(a, "alice")
    again = AgentDriver(b, "alice")  # her resume on the other replica
    stopped = False
    try:
        await b.create_agent("alice", {"billing": 3})
        await alice.hello()
        handoff = await b.request_handoff(skills={"billing": 2})
        offer = await next_of(alice, "offer")
        assert offer.details.handoff_id == handoff.handoff_id
        interaction = await alice.accept(offer.offer_id)
        paused_id = await conn.fetchval("SELECT id FROM replicas WHERE pid = $1", pid(paused))

        # A recovery that takes long: the session row is locked until we say so.
        lock = locker.transaction()
        await lock.start()
        await locker.execute("SELECT 1 FROM sessions WHERE agent_id = 'alice' FOR UPDATE")

        # The replica pauses past the TTL; the other one declares it dead and starts
        # recovering its sessions (and waits for the lock).
        os.killpg(pid(paused), signal.SIGSTOP)
        stopped = True

        async def recovery_waits() -> bool:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE sessions%'",
                own_postgres.name,
            )
            return bool(waiting)

        await wait_for("the recovery waiting for the session row", recovery_waits)

        # The replica runs again while the recovery waits: its heartbeat waits too.
        os.killpg(pid(paused), signal.SIGCONT)
        stopped = False
        await asyncio.sleep(4.0)  # a few heartbeats and change-feed polls go by
        assert "replica_was_declared_dead" not in paused.stdout()

        async def noticed() -> bool:
            return "replica_was_declared_dead" in paused.stdout()

        await lock.commit()  # the recovery commits: alice's session is in its grace period
        released = time.monotonic()
        await wait_for("the revived replica noticing", noticed)
        revived = await conn.fetchval(
            "SELECT stopped_at IS NULL FROM replicas WHERE id = $1", paused_id
        )
        assert revived, "the revived replica did not take its place again"

        grace_left: list[float] = []

        async def recovered() -> bool:
            left = await conn.fetchval(
                "SELECT extract(epoch FROM grace_expires_at - now()) FROM sessions "
                "WHERE agent_id = 'alice' AND state = 'DISCONNECTED'"
            )
            grace_left.append(float(left or 0))
            return left is not None

        await wait_for("the recovery moving alice's session into its grace period", recovered)
        state_then = agent_pb2.AgentState.Name((await b.get_agent("alice")).state)

        # A correct replica now tells alice's stream (UNAVAILABLE, SESSION_DETACHED: resume
        # elsewhere) in time for her to resume within the grace period and keep her work.
        end = await stream_end(alice, timeout=GRACE + 20)
        told_after = time.monotonic() - released
        problems = []
        if (end.code, end.reason) != (grpc.StatusCode.UNAVAILABLE, "SESSION_DETACHED"):
            problems.append(f"her stream ended {end.code.name}/{end.reason}")
        if told_after > grace_left[-1]:
            problems.append(
                f"her stream was told {told_after:.1f} s after the recovery, when her grace "
                f"period ({grace_left[-1]:.1f} s left then) was over; until then it stayed "
                f"open and silent while the pool showed her {state_then}"
            )
        try:
            welcome = await again.resume(alice.welcome.resume_token)
        except grpc.aio.AioRpcError as error:
            problems.append(f"her resume was refused ({failure(error).reason})")
        else:
            held = [i.interaction_id for i in welcome.active_interactions]
            if held != [interaction.interaction_id]:
                problems.append(f"she resumed holding {held}")
        try:
            await b.complete("alice", interaction.interaction_id)
        except grpc.aio.AioRpcError as error:
            problems.append(f"completing her interaction failed: {failure(error).reason}")
        assert not problems, (
            "alice stayed connected to a live replica throughout, yet: " + "; ".join(problems)
        )
    finally:
        if stopped:
            os.killpg(pid(paused), signal.SIGCONT)
        with contextlib.suppress(Exception):
            await locker.close()
        await conn.close()
        for driver in (alice, again):
            driver.leave()  # ends the driver's request stream, also after an error
            driver.drop()
        await a.close()
        await b.close()
        # The paused replica logged `replica_was_declared_dead` (an error, by design here):
        # stop it now, so that the fixture's clean-run check looks at the other one only.
        if paused.running:
            await paused.terminate()
