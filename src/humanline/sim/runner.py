"""Plays a scenario against a running humanline server and summarizes what happened.

The agents run in separate processes (`processes`, each with its own event loop and channel),
the bots and a sampler of the pool in this one. The run has three phases: the agents log in
(the first one at a moment the processes agree on by the wall clock), bots send handoffs for
`duration` seconds, then the run drains: it ends when every handoff is finished (answered and
completed, or abandoned) or `drain` seconds have passed. The agents then log out, the
customers' ratings due by the end of the drain are sent (they are played in the agent
processes, where completions happen: `players.Customers`), and each process sends back what
it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import grpc

from humanline.client import credentials
from humanline.client.credentials import Minter
from humanline.sim.players import AgentPlayer, Bots, Customers, streams
from humanline.sim.report import AlertRecord, Observations, PoolSample, Summary, summarize
from humanline.sim.scenario import AgentGroup, Scenario
from humanline.tokens import KeyRing, KeyRingError
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2_grpc,
    handoff_service_pb2_grpc,
    pool_service_pb2,
    pool_service_pb2_grpc,
    quality_pb2,
)

BOOT_SECONDS = 3.0  # for the agent processes to start before the first log-in
MAX_PROCESSES = 8
AGENTS_PER_PROCESS = 500


@dataclass(frozen=True)
class Options:
    """How to run a scenario."""

    target: str = "127.0.0.1:50051"
    processes: int = 0  # agent processes; 0: as many as the agents need, at most the CPUs
    keys: str | None = None  # the server's keyring, to sign the players' tokens with; None: none


@dataclass(frozen=True)
class Progress:
    """What the progress display shows, once a second."""

    elapsed: float
    phase: str  # "arrivals" | "drain"
    requested: int
    sample: PoolSample | None


class SimulationError(Exception):
    """The run could not start (no server, agents not created); the message says why."""


def minter(keys: str | None) -> Minter | None:
    """Tokens for the simulated callers, signed with the keyring at `keys` (none without)."""
    if keys is None:
        return None
    try:
        return Minter(KeyRing.load(Path(keys)), bot_id="simulator", ops_name="simulator")
    except KeyRingError as exc:
        raise SimulationError(str(exc)) from None


def process_count(scenario: Scenario, options: Options) -> int:
    if options.processes:
        return options.processes
    wanted = -(-scenario.agent_count // AGENTS_PER_PROCESS)
    return max(1, min(wanted, os.cpu_count() or 1, MAX_PROCESSES))


def agent_ids(scenario: Scenario, tag: str) -> list[tuple[str, AgentGroup]]:
    """Every simulated agent's id (unique to the run) and group."""
    return [
        (f"sim-{tag}-{group.name}-{i:04d}", group)
        for group in scenario.agents
        for i in range(group.count)
    ]


def simulate(
    scenario: Scenario, options: Options, on_progress: Callable[[Progress], None] | None = None
) -> tuple[Summary, Observations]:
    """Runs `scenario` against the server at `options.target`; blocks until it is over.
    Returns the summary and what it was made of."""
    seen = asyncio.run(_simulate(scenario, options, on_progress or (lambda _: None)))
    return summarize(scenario.name, scenario.run.duration, seen), seen


async def _simulate(
    scenario: Scenario, options: Options, on_progress: Callable[[Progress], None]
) -> Observations:
    tag = uuid.uuid4().hex[:6]
    agents = agent_ids(scenario, tag)
    seen = Observations()
    async with credentials.channel(options.target, minter(options.keys)) as channel:
        pool = pool_service_pb2_grpc.PoolServiceStub(channel)
        await create_agents(pool, agents)
        try:
            seen.merge(await _play(scenario, options, channel, agents, on_progress))
        finally:
            await _delete_agents(pool, agents)
    return seen


async def _play(
    scenario: Scenario,
    options: Options,
    channel: grpc.aio.Channel,
    agents: list[tuple[str, AgentGroup]],
    on_progress: Callable[[Progress], None],
) -> Observations:
    context = multiprocessing.get_context("spawn")
    count = process_count(scenario, options)
    results = context.Queue()
    stop = context.Event()
    start_at = time.time() + BOOT_SECONDS
    last_at = start_at + scenario.run.duration + scenario.run.drain
    workers = [
        context.Process(
            target=_agent_process,
            args=(
                _Shift(
                    scenario.model_dump(),
                    options.target,
                    [(agent_id, group.name) for agent_id, group in agents[i::count]],
                    start_at,
                    last_at,
                    scenario.run.seed * 1000 + i,
                    options.keys,
                ),
                stop,
                results,
            ),
            name=f"humanline-sim-agents-{i}",
            daemon=True,
        )
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    seen = Observations()
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        seen.merge(await _bots_and_samples(scenario, channel, on_progress))
    finally:
        stop.set()
        loop = asyncio.get_running_loop()
        for _ in workers:
            # Ratings due by the end of the drain are still sent: wait for them too.
            wait = max(0.0, last_at - time.time()) + 60.0
            got = await loop.run_in_executor(None, _get, results, wait)
            if got is None:
                seen.errors["agent process lost"] += 1
                break
            seen.merge(got)
        for worker in workers:
            await loop.run_in_executor(None, worker.join, 10.0)
            if worker.is_alive():
                worker.kill()
    return seen


def _get(results: Any, timeout: float) -> Observations | None:
    with contextlib.suppress(Exception):
        got: Observations = results.get(timeout=timeout)
        return got
    return None


async def _bots_and_samples(
    scenario: Scenario, channel: grpc.aio.Channel, on_progress: Callable[[Progress], None]
) -> Observations:
    seen = Observations()
    rng = random.Random(scenario.run.seed)
    bots = Bots(scenario, handoff_service_pb2_grpc.HandoffServiceStub(channel), rng, seen)
    pool = pool_service_pb2_grpc.PoolServiceStub(channel)
    begun = time.monotonic()
    seen.started = time.time()
    arrivals_end = begun + scenario.run.duration
    phase = "arrivals"

    async def sample() -> None:
        while True:
            await asyncio.sleep(1.0)
            at = time.monotonic() - begun
            snapshot: PoolSample | None = None
            with contextlib.suppress(grpc.aio.AioRpcError):
                status = (
                    await pool.GetPoolStatus(pool_service_pb2.GetPoolStatusRequest(), timeout=5)
                ).status
                snapshot = PoolSample(
                    at=round(at, 3),
                    queued=sum(u.count for u in status.queue_by_urgency),
                    available_agents=sum(
                        s.count
                        for s in status.agents_by_state
                        if s.state == agent_pb2.AGENT_STATE_AVAILABLE
                    ),
                    oldest_wait=status.oldest_wait.ToTimedelta().total_seconds(),
                )
                seen.samples.append(snapshot)
            on_progress(Progress(at, phase, bots.requested, snapshot))

    async def listen() -> None:
        """Records the server's quality flags as WatchQualityAlerts says them."""
        call = pool.WatchQualityAlerts(pool_service_pb2.WatchQualityAlertsRequest())
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for message in call:
                alert = message.alert
                seen.alerts.append(
                    AlertRecord(
                        alert.key,
                        quality_pb2.QualityMetric.Name(alert.metric),
                        quality_pb2.QualityReference.Name(alert.reference),
                        message.cleared,
                        time.time(),
                    )
                )

    helpers = [asyncio.create_task(sample()), asyncio.create_task(listen())]
    try:
        await bots.run(arrivals_end)
        phase = "drain"
        await bots.finish(arrivals_end + scenario.run.drain)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    return seen


# --- agent processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Shift:
    """What one agent process plays: its agents (id, group), from `start_at` to `last_at` at
    the latest, by the wall clock."""

    scenario: dict[str, Any]
    target: str
    agents: list[tuple[str, str]]
    start_at: float
    last_at: float
    seed: int
    keys: str | None


def _agent_process(shift: _Shift, stop: ProcessEvent, results: Any) -> None:
    """One agent process, until told to stop; sends its observations back."""
    seen = Observations()
    try:
        asyncio.run(_agents(shift, stop, seen))
    finally:
        results.put(seen)


async def _agents(shift: _Shift, stop: ProcessEvent, seen: Observations) -> None:
    scenario = Scenario.model_validate(shift.scenario)
    groups = {g.name: g for g in scenario.agents}
    types = {t.name: t for t in scenario.types}
    rng = random.Random(shift.seed)
    until = time.monotonic() + (shift.last_at - time.time())
    tokens = minter(shift.keys)
    async with credentials.channel(shift.target, tokens) as channel:
        stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        handoffs = handoff_service_pb2_grpc.HandoffServiceStub(channel)
        customers = Customers(scenario, handoffs, seen, shift.start_at)
        players = [
            AgentPlayer(
                agent_id,
                groups[group],
                types,
                stub,
                random.Random(rng.getrandbits(64)),
                streams(scenario.run.seed, "presence", agent_id),
                seen,
                until=until,
                scenario=scenario,
                started=shift.start_at,
                metadata=() if tokens is None else tokens.agent(agent_id),
                customers=customers,
            )
            for agent_id, group in shift.agents
        ]
        await asyncio.sleep(max(0.0, shift.start_at - time.time()))
        playing = asyncio.gather(*(p.run() for p in players))
        while not playing.done() and not stop.is_set():
            await asyncio.wait([playing], timeout=0.2)
        for player in players:
            player.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await playing
        await customers.finish(until)


# --- the pool ------------------------------------------------------------------------------


async def create_agents(
    pool: pool_service_pb2_grpc.PoolServiceStub,
    agents: list[tuple[str, AgentGroup]],
    concurrency: int = 20,
) -> None:
    """Creates each agent (id, group) with its group's skills, languages and capacity,
    `concurrency` calls at a time; a failure raises SimulationError."""
    limit = asyncio.Semaphore(concurrency)

    async def create(agent_id: str, group: AgentGroup) -> None:
        request = pool_service_pb2.CreateAgentRequest(
            agent_id=agent_id,
            agent=agent_pb2.Agent(
                display_name=agent_id,
                skills=[
                    agent_pb2.AgentSkill(skill=skill, proficiency=level)
                    for skill, level in sorted(group.skills.items())
                ],
                languages=group.languages,
                capacity=group.capacity,
            ),
        )
        async with limit:
            await pool.CreateAgent(request, timeout=10)

    try:
        await asyncio.gather(*(create(agent_id, group) for agent_id, group in agents))
    except grpc.aio.AioRpcError as error:
        hint = ""
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            hint = " (sign the simulated callers' tokens with the server's keyring: --keys FILE)"
        raise SimulationError(
            f"could not create the simulated agents: {error.code().name}: {error.details()}{hint}"
        ) from None


async def _delete_agents(
    pool: pool_service_pb2_grpc.PoolServiceStub, agents: list[tuple[str, AgentGroup]]
) -> None:
    """Removes the run's agents again (best effort: one still connected is left)."""
    limit = asyncio.Semaphore(20)

    async def delete(agent_id: str) -> None:
        async with limit:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await pool.DeleteAgent(
                    pool_service_pb2.DeleteAgentRequest(agent_id=agent_id), timeout=10
                )

    await asyncio.gather(*(delete(agent_id) for agent_id, _ in agents))
