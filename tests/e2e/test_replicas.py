"""Three replicas on one PostgreSQL database, a crowd of agents and bots.

Three `humanline serve` processes share a fresh database. 200 agents (capacity 1 to 3, two
skills each) connect at random replicas; bots request 5,000 handoffs through random replicas,
50 at a time, retrying the same request_id on another replica after a failure, re-sending a
few on purpose and cancelling a few. Agents accept most offers, decline some and let a few
expire (ten flaky ones miss a third, so the server sets them away and they come back); each
completes its work through a random replica after a short handle time.

Afterwards the database proves, over the whole history (an audit trail ordered by the writes'
locks, see tests/e2e/swarm.py), that no handoff ever had two live offers or two assignments,
that no agent ever held more than its capacity, that every handoff reached exactly one
terminal state once, and that there is exactly one handoff per request_id the bots sent.
It also holds the service to being live: every offer reached its agent's
stream within DELIVERY_BOUND of being made (or was taken back unseen within it), none
expired unseen, no offer was taken back twice on one stream, and nobody was set away for
misses it did not make.

The second run cancels nothing and SIGKILLs one replica once a third of the handoffs are done,
at a moment when its agents hold accepted work: their streams break and they resume on the
others, keeping that work; the survivors declare it dead; the invariants hold and every
handoff still completes.

The third run is a deploy: two replicas, and one is sent SIGTERM at such a moment. It drains:
each of its agents is told to move (`drain`) and resumes on the other replica, keeping its
work, and gets no new offer on the old stream; bots' calls already on their way finish there
(clients send it nothing new, as a load balancer that dropped its endpoint); it exits 0, with
nobody having to declare it dead. Zero lost handoffs, zero failed completions, no new log-in.

HUMANLINE_E2E_HANDOFFS and HUMANLINE_E2E_AGENTS scale the runs (defaults 5000 and 200);
HUMANLINE_E2E_SEED shifts every run's random draws (default 0), to repeat a run on other draws.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.conftest import PostgresDatabase
from tests.e2e.process import ServerProcess, StartServer
from tests.e2e.swarm import (
    BotPlan,
    Bots,
    Cluster,
    Replica,
    Swarm,
    agent_profiles,
    check_database,
    check_delivery,
    install_audit,
    stuck_handoffs,
    terminal_counts,
)

pytestmark = pytest.mark.e2e

REPLICAS = 3
AGENTS = int(os.environ.get("HUMANLINE_E2E_AGENTS", "200"))
HANDOFFS = int(os.environ.get("HUMANLINE_E2E_HANDOFFS", "5000"))
SEED = int(os.environ.get("HUMANLINE_E2E_SEED", "0"))
# Far beyond a normal run (about 5 minutes for 5,000 on a 2-core machine); failing takes this
# long, then lists the handoffs that are stuck.
ALL_DONE_TIMEOUT = 900.0
AGENT_HEARTBEAT_EVERY = 3.0
ANALYZE_EVERY = 5.0
# Bots keep at most this many handoffs waiting beyond the ones done (about twice the agents'
# capacity): arrivals follow service, so the kill hits bots in the middle of their requests.
BACKLOG = 400
# The kill waits (at most KILL_WAIT seconds) for a replica whose agents hold this much work.
KILL_WHEN_HELD = 3
KILL_WAIT = 30.0
# Every offer reaches its agent's stream, or is taken back, within this. Measured with 3
# replicas, 200 agents, the bots and PostgreSQL on 2 cores (saturated), the replica kill
# included: 0.23 s median, 1.7 s p99, 3.3 s at most (the crowd's own loop lagged up to
# 0.7 s); an offer lost in the cracks stays unseen until it expires (10 s).
DELIVERY_BOUND = timedelta(seconds=6)

SETTINGS = {
    # Well beyond any delivery on a saturated 2-core machine (3.3 s at most seen), so that an
    # offer left unseen until it expires is a lost offer, not a slow one.
    "HUMANLINE_OFFER_TIMEOUT_SECONDS": "10",
    # Long enough that the killed replica's agents resume before their work is taken back.
    "HUMANLINE_GRACE_PERIOD_SECONDS": "20",
    "HUMANLINE_HEARTBEAT_INTERVAL_SECONDS": "10",
    "HUMANLINE_REPLICA_HEARTBEAT_SECONDS": "1",
    # Generous: on a saturated 2-core machine a live replica's heartbeat can lag several
    # seconds (it shares the event loop and the connection pool with the load), and a replica
    # presumed dead by mistake is a different scenario (see test_replica_presumed_dead.py).
    # The killed replica's agents resume at once anyway; this only delays the reaping.
    "HUMANLINE_REPLICA_TTL_SECONDS": "10",
    "HUMANLINE_SWEEP_INTERVAL_SECONDS": "0.25",
    # 3 replicas x (5 + 5 overflow) connections, plus listeners, fit PostgreSQL's default 100.
    "HUMANLINE_DB_POOL_SIZE": "5",
}


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Victim:
    """The replica stopped in the middle (`how`: "kill" or "drain"), and what was on it at
    that moment."""

    how: str
    replica: Replica
    replica_id: str
    agents: dict[str, set[str]]  # agent id -> interactions it held
    handoffs: dict[str, str]  # handoff id -> state, offered or assigned to its agents
    at_completed: int

    def summary(self) -> dict[str, Any]:
        states = list(self.handoffs.values())
        return {
            "replica": self.replica.name,
            "how": self.how,
            "stopped_at_completed": self.at_completed,
            "agents_on_it": len(self.agents),
            "interactions_held_through_the_stop": sum(len(h) for h in self.agents.values()),
            "handoffs_offered_through_it": states.count("OFFERED"),
            "handoffs_assigned_through_it": states.count("ASSIGNED"),
        }


async def replica_id_of(conn: asyncpg.Connection, server: ServerProcess) -> str:
    assert server.process is not None
    row = await conn.fetchrow(
        "SELECT id FROM replicas WHERE pid = $1 AND stopped_at IS NULL", server.process.pid
    )
    assert row is not None, f"no live replica row for pid {server.process.pid}"
    return str(row["id"])


async def stop_one(
    cluster: Cluster, swarm: Swarm, conn: asyncpg.Connection, done: int, how: str
) -> Victim:
    """SIGKILLs (`how` "kill") or SIGTERMs ("drain") a replica while its agents hold accepted
    work (the one holding the most, once some hold at least KILL_WHEN_HELD interactions, or
    after KILL_WAIT seconds whatever they hold), noting what it was serving."""

    def held_on(replica: Replica) -> int:
        return sum(len(a.held) for a in swarm.agents if a.replica is replica and a.outbox)

    deadline = time.monotonic() + KILL_WAIT
    while True:
        replica = max(cluster.live(), key=held_on)
        if held_on(replica) >= KILL_WHEN_HELD or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    replica_id = await replica_id_of(conn, replica.server)
    agents = {a.agent_id: set(a.held) for a in swarm.agents if a.replica is replica and a.outbox}
    if how == "kill":
        await cluster.kill(replica)
        rows = await handed_through(conn, replica_id)
    else:
        rows = await handed_through(conn, replica_id)  # before: the drain hands it over
        assert await cluster.drain(replica) == 0, "the drained replica did not exit 0"
        assert replica.server.forced_kills == 0, "the drained replica had to be SIGKILLed"
    return Victim(how, replica, replica_id, agents, {r["id"]: r["state"] for r in rows}, done)


async def handed_through(conn: asyncpg.Connection, replica_id: str) -> list[asyncpg.Record]:
    """Handoffs offered or assigned to the agents whose sessions the replica holds."""
    return await conn.fetch(
        """
        SELECT h.id, h.state FROM handoffs h
          JOIN sessions s ON s.agent_id = h.agent_id AND s.state = 'CONNECTED'
         WHERE h.state IN ('OFFERED', 'ASSIGNED') AND s.replica_id = $1
        """,
        replica_id,
    )


async def run_crowd(
    database: PostgresDatabase,
    start_server: StartServer,
    *,
    stop: str | None,
    seed: int,
    replicas: int = REPLICAS,
    handoffs: int = HANDOFFS,
) -> dict[str, Any]:
    """Runs the crowd against `replicas` replicas (a third of the way, SIGKILLing one if
    `stop` is "kill", SIGTERMing one if "drain"), checks every guarantee, and returns the
    run's numbers."""
    started = time.monotonic()
    seed += SEED
    conn = await asyncpg.connect(database.dsn)
    cluster: Cluster | None = None
    swarm: Swarm | None = None
    bots_task: asyncio.Task[None] | None = None
    try:
        await install_audit(conn)
        servers = await asyncio.gather(
            *(
                start_server(HUMANLINE_DATABASE_URL=database.url, **SETTINGS)
                for _ in range(replicas)
            )
        )
        rng = random.Random(seed)
        cluster = Cluster(servers, rng)
        swarm = Swarm(cluster, seed)
        await swarm.create_agents(agent_profiles(AGENTS, rng))
        await swarm.connect_agents(AGENT_HEARTBEAT_EVERY)
        spread = dict(sorted(swarm.replica_of().items()))
        # The runs that stop a replica cancel nothing, so that every handoff must end
        # COMPLETED.
        plan = BotPlan(handoffs=handoffs, backlog=BACKLOG, cancel=0.0 if stop else 0.03)
        bots = Bots(swarm, plan)
        ready = time.monotonic()
        bots_task = asyncio.create_task(bots.run())
        victim = await watch_until_done(conn, cluster, swarm, bots, bots_task, stop=stop)
        await bots_task
        crowd_time = time.monotonic() - ready
        await swarm.stop()

        report = await check_database(conn, swarm.observed, bots.requests)
        delivery = await check_delivery(conn, swarm.observed, DELIVERY_BOUND)
        observed = swarm.observed
        summary: dict[str, Any] = {
            "crowd_seconds": round(crowd_time, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "agents_per_replica_at_start": spread,
            "database": dict(sorted(report.counts.items())),
            "delivery": dict(sorted(delivery.counts.items())),
            "raw_timestamp_overlaps": dict(report.timestamp_overlaps),
            "clients": dict(sorted(observed.counts.items())),
            "rescinds_seen": dict(sorted(observed.rescinded.items())),
            "commands_rejected": dict(sorted(observed.rejected.items())),
            "stream_ends": dict(sorted(observed.stream_ends.items())),
            "retries": dict(sorted(observed.retried.items())),
        }
        if victim is not None:
            summary["victim"] = victim.summary()
        print(summary)
        dump = os.environ.get("HUMANLINE_E2E_DUMP")  # a folder: logs and stories, to debug
        if dump:
            dump_run(
                dump,
                cluster,
                swarm,
                observed.violations + report.violations + observed.liveness + delivery.violations,
            )
        assert not observed.violations, observed.violations[:20]
        assert not report.violations, report.violations[:20]
        liveness = observed.liveness + delivery.violations
        assert not liveness, liveness[:20]
        assert observed.counts["resume_refused"] == 0  # nobody's grace period ran out
        assert report.counts["offer ACCEPTED->REVOKED"] == 0  # nobody lost accepted work
        if handoffs >= 1000:
            # The crowd did what it was meant to: declines, misses, agents set away and back.
            assert report.counts["offer PENDING->DECLINED"] > 0
            assert report.counts["offer PENDING->EXPIRED"] > 0
            assert observed.counts["set_away_for_misses"] > 0
        if victim is not None:
            assert report.counts["handoffs COMPLETED"] == handoffs  # every one, none cancelled
            await check_victim(conn, victim, swarm)
        if stop == "drain":
            assert victim is not None
            check_drain(victim, swarm, report.counts)
        return summary
    finally:
        if bots_task is not None and not bots_task.done():
            bots_task.cancel()
        if swarm is not None:
            await swarm.stop(timeout=10)
        await conn.close()
        if cluster is not None:
            await cluster.close()


def dump_run(folder: str, cluster: Cluster, swarm: Swarm, violations: list[str]) -> None:
    """Writes each replica's log, every agent's recent story and the violations to `folder`."""
    os.makedirs(folder, exist_ok=True)
    for replica in cluster.replicas:
        with open(os.path.join(folder, f"{replica.name}.log"), "w") as out:
            out.write(replica.server.stdout())
    with open(os.path.join(folder, "agents.txt"), "w") as out:
        for agent in swarm.agents:
            out.write(f"{agent.agent_id}: {agent.story(last=400)}\n")
    with open(os.path.join(folder, "violations.txt"), "w") as out:
        out.write("\n".join(violations) + "\n")


async def watch_until_done(
    conn: asyncpg.Connection,
    cluster: Cluster,
    swarm: Swarm,
    bots: Bots,
    bots_task: asyncio.Task[None],
    *,
    stop: str | None,
) -> Victim | None:
    """Polls the database until every handoff is terminal; stops a replica a third of the way
    if `stop` says how. Fails, listing the stuck handoffs, after ALL_DONE_TIMEOUT."""
    handoffs = bots.plan.handoffs
    loop = asyncio.get_running_loop()
    start = loop.time()
    victim: Victim | None = None
    last_print = last_analyze = -100.0
    while True:
        if loop.time() - last_analyze > ANALYZE_EVERY:
            # Autovacuum's job (it is off on some test servers): without statistics the
            # planner scans the whole queue for every match, and matching crawls.
            last_analyze = loop.time()
            await conn.execute("ANALYZE")
        states = await terminal_counts(conn)
        terminal = states["COMPLETED"] + states["CANCELLED"]
        if stop and victim is None and states["COMPLETED"] >= handoffs // 3:
            victim = await stop_one(cluster, swarm, conn, states["COMPLETED"], stop)
            print(f"{loop.time() - start:6.1f}s {stop}: {victim.summary()}")
        if bots_task.done() and terminal == handoffs:
            return victim
        if bots_task.done() and bots_task.exception() is not None:
            raise AssertionError("the bots failed") from bots_task.exception()
        if loop.time() - last_print > 10:
            last_print = loop.time()
            print(f"{loop.time() - start:6.1f}s requested {bots.answered}: {dict(states)}")
        if loop.time() - start > ALL_DONE_TIMEOUT:
            pytest.fail(
                f"after {ALL_DONE_TIMEOUT:.0f} s, {handoffs - terminal} of {handoffs} handoffs "
                f"are not terminal ({dict(states)}; bots answered {bots.answered}); the first "
                f"ones:\n{await stuck_handoffs(conn)}\nclients: {swarm.observed.violations[:10]}"
            )
        await asyncio.sleep(0.5)


async def check_victim(conn: asyncpg.Connection, victim: Victim, swarm: Swarm) -> None:
    """The stopped replica is on record as stopped (a killed one declared dead by the
    others), its agents resumed elsewhere with their work, and what was offered or assigned
    through it completed."""
    row = await conn.fetchrow("SELECT stopped_at FROM replicas WHERE id = $1", victim.replica_id)
    assert row is not None
    assert row["stopped_at"] is not None, "the stopped replica is not on record as stopped"
    if victim.how == "kill":
        survivors = [r for r in swarm.cluster.replicas if r.alive]
        assert any("replica_declared_dead" in r.server.stdout() for r in survivors)
    assert victim.agents, "no agent was connected to the stopped replica"
    assert any(victim.agents.values()), "no agent held accepted work through the stop"
    assert swarm.observed.counts["resumes"] >= len(victim.agents)
    completed_by = {iid: agent for iid, (agent, _) in swarm.observed.completed.items()}
    for agent_id, held in victim.agents.items():
        for interaction_id in held:
            # Held through the crash and completed by the same agent.
            assert completed_by.get(interaction_id) == agent_id, (agent_id, interaction_id)
    states = await conn.fetch(
        "SELECT id, state FROM handoffs WHERE id = ANY($1::text[])", list(victim.handoffs)
    )
    assert len(states) == len(victim.handoffs)
    assert {r["state"] for r in states} <= {"COMPLETED", "CANCELLED"}


def check_drain(victim: Victim, swarm: Swarm, counts: Counter[str]) -> None:
    """The drained replica handed every agent over: each was told to move and resumed on the
    other replica (no new log-in anywhere), no completion failed, and the survivor had no
    one to declare dead."""
    drained = victim.replica
    assert all(r.alive for r in swarm.cluster.replicas if r is not drained)
    survivors = [r for r in swarm.cluster.replicas if r.alive]
    assert not any("replica_declared_dead" in r.server.stdout() for r in survivors)
    events = [e for e in drained.server.log_events() if e["event"].startswith("drain_")]
    assert [e["event"] for e in events] == ["drain_started", "drain_finished"], events
    assert events[1]["agents_handed_over"] >= len(victim.agents)
    observed = swarm.observed
    told = {a.agent_id for a in swarm.agents if drained.name in a.drained_from}
    assert set(victim.agents) <= told, sorted(set(victim.agents) - told)[:10]
    assert observed.counts["drains_without_deadline"] == 0
    for agent in swarm.agents:  # every one ended on a survivor
        assert agent.replica is not None
        assert agent.replica.alive, (agent.agent_id, agent.story())
    assert observed.counts["hellos"] == len(swarm.agents)  # nobody had to log in again
    # Every call (completions, requests) went through at its first try: those on their way
    # to the drained replica finished there.
    assert dict(observed.retried) == {}
    assert counts["offer ACCEPTED->REVOKED"] == 0


async def test_many_replicas_assign_nothing_twice_and_lose_nothing(
    own_postgres: PostgresDatabase, start_server: StartServer
) -> None:
    await run_crowd(own_postgres, start_server, stop=None, seed=1)


async def test_a_replica_killed_in_the_middle_loses_nothing(
    own_postgres: PostgresDatabase, start_server: StartServer
) -> None:
    await run_crowd(own_postgres, start_server, stop="kill", seed=2)


async def test_a_replica_drained_in_the_middle_hands_everyone_over(
    own_postgres: PostgresDatabase, start_server: StartServer
) -> None:
    # A deploy with two replicas: one is sent SIGTERM while its agents hold work.
    await run_crowd(
        own_postgres, start_server, stop="drain", seed=3, replicas=2, handoffs=HANDOFFS // 2
    )
