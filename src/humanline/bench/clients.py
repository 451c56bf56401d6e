"""The load generators: client processes (spawned), each with one channel to the server under
test, and the parent's side of talking to them.

Every process plays a part of a phase (`Job`) and answers over a pipe:

1. It creates its agents (PoolService.CreateAgent, in parallel) and logs them in; then says
   ("ready", ...).
2. On ("run", wall-clock time), it runs its load from that moment:
   - "echo": unary calls to the echo service in a closed loop;
   - "lifecycles": bots in a closed loop, each requesting a handoff and waiting until an agent
     has completed it before requesting the next;
   - "offers": handoffs at evenly spaced moments (an open loop), noting how long each took
     from just before RequestHandoff to its offer reaching the agent's stream.
   It lets the work in flight end (at most `drain` seconds) and says ("result", ...).
3. On ("stop",) it ends its streams and exits.

A process's agents have a skill of its own (`bench-p<index>`) and its handoffs require it, so
each handoff is offered to an agent of the process that requested it, and the bookkeeping
stays in one process (and on one clock). A process that fails says ("failed", why).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

import grpc

from humanline.bench import echo
from humanline.bench.agents import Crew
from humanline.bench.load import Window, closed_loop, monotonic_at
from humanline.client import credentials
from humanline.client.credentials import Minter
from humanline.heap import HeapFreezer
from humanline.sim.runner import SimulationError, create_agents
from humanline.sim.scenario import AgentGroup
from humanline.tokens import KeyRing
from humanline.v1 import (
    agent_service_pb2_grpc,
    handoff_pb2,
    handoff_service_pb2,
    handoff_service_pb2_grpc,
    pool_service_pb2_grpc,
)

CALL_TIMEOUT = 60.0
CREATE_CONCURRENCY = 50  # CreateAgent calls in flight per process
HELLO_CONCURRENCY = 200  # hellos in flight per process
JOIN_TIMEOUT = 15.0
FINISH_TIMEOUT = 60.0  # for the accepts and completions in flight at the end


class BenchError(Exception):
    """A phase could not run (a server or client process failed, a deadline passed); the
    message says which and why."""


@dataclass(frozen=True)
class Job:
    """One client process's part of a phase."""

    kind: Literal["echo", "lifecycles", "offers"]
    target: str
    index: int
    tag: str  # unique to the phase: in agent ids and conversation ids
    agents: int = 0
    capacity: int = 1
    concurrency: int = 0  # echo, lifecycles: calls or bots in flight
    rate: float = 0.0  # offers: handoffs per second from this process
    offset: float = 0.0  # offers: seconds from the start to this process's first handoff
    warmup: float = 0.0
    duration: float = 0.0
    drain: float = 0.0  # seconds at most for the work in flight at the end
    request_bytes: int = 0  # echo
    work: float = 0.0  # agents' mean seconds of work on an interaction (0: none)
    keys: str = ""  # the server's keyring, to sign the process's tokens with ("": none)

    @property
    def skill(self) -> str:
        return f"bench-p{self.index}"

    def agent_ids(self) -> list[str]:
        return [f"bench-{self.tag}-p{self.index}-{k:05d}" for k in range(self.agents)]

    def conversation_id(self, number: int) -> str:
        return f"bench-{self.tag}-p{self.index}-{number}"

    def handoff_request(self, number: int) -> handoff_service_pb2.RequestHandoffRequest:
        """The bench's handoff: one required skill, this process's."""
        return handoff_service_pb2.RequestHandoffRequest(
            request_id=str(uuid.uuid4()),
            conversation_id=self.conversation_id(number),
            customer_id=f"bench-customer-{number % 1000}",
            interaction_type="order_lookup",  # built in: its policy, one lookup; skills named
            required_skills=[handoff_pb2.SkillRequirement(skill=self.skill, min_proficiency=1)],
            urgency=handoff_pb2.URGENCY_HIGH,
            summary="Charged twice for the same order; asks for a refund of the second charge.",
            reason=handoff_pb2.HANDOFF_REASON_CUSTOMER_REQUEST,
        )


# --- in the client process -------------------------------------------------------------------


def client_process(job: Job, pipe: Connection) -> None:
    """A client process: plays `job`, talking to the parent over `pipe`."""
    try:
        asyncio.run(_client(job, pipe))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        with contextlib.suppress(OSError):
            pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        pipe.close()


async def _hear(pipe: Connection, expected: str) -> tuple[Any, ...]:
    """The parent's next message, which must be `expected`; waits as long as it takes (the
    parent kills its clients when it gives up)."""
    loop = asyncio.get_running_loop()
    while True:
        if await loop.run_in_executor(None, pipe.poll, 0.5):
            message: tuple[Any, ...] = pipe.recv()
            if message[0] != expected:
                raise BenchError(f"expected {expected!r} from the parent, got {message[0]!r}")
            return message


async def _client(job: Job, pipe: Connection) -> None:
    errors: Counter[str] = Counter()
    minter = None
    if job.keys:
        minter = Minter(KeyRing.load(Path(job.keys)), bot_id=f"bench-p{job.index}")
    async with credentials.channel(job.target, minter) as channel:
        if job.kind == "echo":
            pipe.send(("ready", {}))
            (_, begin) = await _hear(pipe, "run")
            window = Window(monotonic_at(begin), job.warmup, job.duration)
            counted, total = await echo.load(
                channel, job.request_bytes, job.concurrency, window, errors
            )
            pipe.send(("result", {"counted": counted, "total": total, "errors": dict(errors)}))
            await _hear(pipe, "stop")
            return
        crew = Crew(agent_service_pb2_grpc.AgentServiceStub(channel), errors, minter, job.work)
        started = time.monotonic()
        group = AgentGroup(name=job.skill, count=job.agents, skills={job.skill: 3})
        try:
            await create_agents(
                pool_service_pb2_grpc.PoolServiceStub(channel),
                [(agent_id, group) for agent_id in job.agent_ids()],
                concurrency=CREATE_CONCURRENCY,
            )
        except SimulationError as exc:
            raise BenchError(str(exc)) from None
        created = time.monotonic()
        connected = await crew.connect(job.agent_ids(), HELLO_CONCURRENCY)
        # Thousands of agents' streams in one process: the same care as the server's, so
        # that the instrument's own collector pauses do not read as the server's latency.
        heap = HeapFreezer()
        heap.start()
        pipe.send(
            (
                "ready",
                {
                    "connected": connected,
                    "create_s": created - started,
                    "connect_s": time.monotonic() - created,
                    "errors": dict(errors),
                },
            )
        )
        (_, begin) = await _hear(pipe, "run")
        handoffs = handoff_service_pb2_grpc.HandoffServiceStub(channel)
        play = _lifecycles if job.kind == "lifecycles" else _offers
        result = await play(job, handoffs, crew, monotonic_at(begin))
        result["completed"] = crew.completed
        result["errors"] = dict(errors)
        pipe.send(("result", result))
        await _hear(pipe, "stop")
        await heap.stop()
        crew.close()


@dataclass
class _Sizes:
    """Serialized sizes of the handoff requests sent and the responses received."""

    requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0

    def add(
        self,
        request: handoff_service_pb2.RequestHandoffRequest,
        response: handoff_service_pb2.RequestHandoffResponse,
    ) -> None:
        self.requests += 1
        self.request_bytes += request.ByteSize()
        self.response_bytes += response.ByteSize()

    def means(self) -> dict[str, int]:
        n = max(self.requests, 1)
        return {
            "request": round(self.request_bytes / n),
            "response": round(self.response_bytes / n),
        }


async def _lifecycles(
    job: Job,
    stub: handoff_service_pb2_grpc.HandoffServiceStub,
    crew: Crew,
    begin: float,
) -> dict[str, Any]:
    numbers = itertools.count()
    sizes = _Sizes()
    durations: list[float] = []

    async def lifecycle() -> bool:
        number = next(numbers)
        request = job.handoff_request(number)
        completed = crew.completion(request.conversation_id)
        started = time.monotonic()
        try:
            response = await stub.RequestHandoff(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            crew.errors[f"request {error.code().name}"] += 1
            crew.forget(request.conversation_id)
            return False
        sizes.add(request, response)
        try:
            ended = await asyncio.wait_for(completed, job.drain)
        except TimeoutError:
            crew.errors["lifecycle not completed within the drain time"] += 1
            crew.forget(request.conversation_id)
            return False
        durations.append(ended - started)
        return True

    window = Window(begin, job.warmup, job.duration)
    counted, total = await closed_loop(job.concurrency, window, lifecycle)
    await _finish(crew)
    return {
        "counted": counted,
        "lifecycles": total,
        "queued": sizes.requests,
        "message_bytes": sizes.means(),
        "durations": durations,
    }


@dataclass
class _OpenLoop:
    """What the open loop sent and when (monotonic), and how many RequestHandoffs succeeded."""

    sent: dict[str, float] = field(default_factory=dict)  # conversation id -> just before
    sent_wall: dict[str, float] = field(default_factory=dict)  # the same, wall-clock time
    offers: dict[str, asyncio.Future[float]] = field(default_factory=dict)  # -> arrival
    queued: int = 0
    calls: set[asyncio.Task[None]] = field(default_factory=set)


async def _offers(
    job: Job,
    stub: handoff_service_pb2_grpc.HandoffServiceStub,
    crew: Crew,
    begin: float,
) -> dict[str, Any]:
    run = _OpenLoop()

    async def request(number: int) -> None:
        message = job.handoff_request(number)
        conversation = message.conversation_id
        run.sent[conversation] = time.monotonic()
        run.sent_wall[conversation] = time.time()
        try:
            await stub.RequestHandoff(message, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            crew.errors[f"request {error.code().name}"] += 1
            run.offers[conversation].cancel()  # never offered: counts as never
            crew.forget(conversation)
            return
        run.queued += 1

    count = max(0, math.ceil(round((job.duration - job.offset) * job.rate, 6)))
    for number in range(count):
        delay = begin + job.offset + number / job.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        run.offers[job.conversation_id(number)] = crew.offer(job.conversation_id(number))
        task = asyncio.create_task(request(number))
        run.calls.add(task)
        task.add_done_callback(run.calls.discard)
    # Until every handoff was offered, or for the drain time at most.
    awaited = [f for f in run.offers.values() if not f.done()] + list(run.calls)
    if awaited:
        await asyncio.wait(awaited, timeout=job.drain)
    offered = {
        conversation: future.result() - run.sent[conversation]
        for conversation, future in run.offers.items()
        if future.done() and not future.cancelled()
    }
    latencies = list(offered.values())
    # Each handoff sent: when (wall-clock), and its time to offer (None: never offered).
    samples = [[at, offered.get(conversation)] for conversation, at in run.sent_wall.items()]
    if run.calls:  # RequestHandoffs still unanswered: let them end, for exact counts
        await asyncio.wait(list(run.calls), timeout=FINISH_TIMEOUT)
    await _finish(crew)
    moments = sorted(run.sent.values())
    return {
        "sent": len(run.sent),
        "queued": run.queued,
        "offered": len(latencies),
        "latencies": latencies,
        "samples": samples,
        "send_span": moments[-1] - moments[0] if moments else 0.0,
    }


async def _finish(crew: Crew) -> None:
    """The crew's work in flight ends (FINISH_TIMEOUT at most, then it counts as an error)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FINISH_TIMEOUT):
            await crew.finish()
    if crew.unfinished():
        crew.errors["work left unfinished at the end"] += crew.unfinished()


# --- in the parent ----------------------------------------------------------------------------


class Fleet:
    """The client processes of one phase, one per job, and the conversation with them."""

    def __init__(self, jobs: list[Job]) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for job in jobs:
            mine, theirs = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(job, theirs),
                name=f"humanline-bench-{job.kind}-{job.index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._pipes.append(mine)
            self._processes.append(process)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def collect(self, expected: str, timeout: float, doing: str) -> list[dict[str, Any]]:
        """Every process's next message, which must be `expected`, in process order. Raises
        BenchError when one fails, exits, or `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        got: dict[int, dict[str, Any]] = {}
        while len(got) < len(self._pipes):
            pending = [p for i, p in enumerate(self._pipes) if i not in got]
            ready = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise BenchError(
                    f"{doing}: {len(pending)} of {len(self._pipes)} client processes did not "
                    f"answer within {timeout:.0f} s"
                )
            for pipe in ready:
                assert isinstance(pipe, Connection)
                index = self._pipes.index(pipe)
                try:
                    message = pipe.recv()
                except EOFError:
                    raise BenchError(f"{doing}: client process {index} exited") from None
                if message[0] == "failed":
                    raise BenchError(f"{doing}: client process {index} failed: {message[1]}")
                if message[0] != expected:
                    raise BenchError(f"{doing}: client process {index} said {message[0]!r}")
                got[index] = message[1]
        return [got[i] for i in range(len(self._pipes))]

    def tell(self, *message: object) -> None:
        """Sends `message` to every process still listening."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(message)

    def close(self) -> None:
        """Tells the processes to stop; kills any still there after a while."""
        self.tell("stop")
        deadline = time.monotonic() + JOIN_TIMEOUT
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self._pipes:
            pipe.close()
