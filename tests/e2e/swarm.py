"""A crowd against several `humanline serve` replicas on one PostgreSQL database.

`Cluster` holds one shared client channel per replica and knows which replicas are alive.
`SimAgent` plays one agent app (one stream, offers handled concurrently up to capacity:
accept, decline or let expire; accepted work completed after a short handle time through any
replica; back to available after being set away; resume on another replica when the stream
breaks). `Bots` request handoffs through random replicas with bounded concurrency, retrying
the same request_id elsewhere after a failure, and cancel or re-send a few on purpose.
`Swarm` runs all of it and records what the clients saw.

The database side: `install_audit` adds an audit trail (triggers) to the test database before
the servers start, and `check_database` proves the guarantees from it afterwards. The trail is
ordered by a sequence drawn inside the writing statement, while that statement holds its row
locks; every claim (an offer, a slot of an agent) waits on the row lock of the write that
freed it, so the trail orders conflicting writes as they happened. The rows' own timestamps
are each transaction's start time (PostgreSQL `now()`), which need not follow that order:
the cross-check from them takes each interval's start from the trail's clock time instead
(see `_check_timestamps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc

from humanline.client.agents import Outbox
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
)
from tests.e2e.process import ServerProcess, connect
from tests.support.client import ConnectRequest, ConnectResponse, Stubs, error_details

H = handoff_pb2

# Codes after which a call may simply be tried again on another replica: the replica is gone
# or going, the store hiccupped, a race was lost. The operations are idempotent (request_id,
# completion, cancel). UNKNOWN and INTERNAL are retried too, but each one is a violation.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}
SERVER_ERRORS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
CALL_TIMEOUT = 30.0

SKILLS = ("billing", "tech", "sales")
# Types without built-in policies (the fallback routes them): their floors and default
# skills do not apply, so any agent with the skills named may take them.
INTERACTION_TYPES = ("billing_question", "tech_support", "upgrade", "order_status")
URGENCIES = (H.URGENCY_LOW, H.URGENCY_NORMAL, H.URGENCY_HIGH, H.URGENCY_CRITICAL)


# --- the replicas ----------------------------------------------------------------------------


@dataclass
class Replica:
    """One server process, the shared channel to it, and whether it is alive."""

    name: str
    server: ServerProcess
    stubs: Stubs
    alive: bool = True


class Cluster:
    """The replicas, one shared client channel each."""

    def __init__(self, servers: Iterable[ServerProcess], rng: random.Random) -> None:
        self.replicas = [
            Replica(f"r{i + 1}", server, connect(server.target)) for i, server in enumerate(servers)
        ]
        self._rng = rng

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def pick(self, avoid: Replica | None = None) -> Replica:
        """A random live replica, another one than `avoid` if there is one."""
        live = self.live()
        others = [r for r in live if r is not avoid]
        return self._rng.choice(others or live or self.replicas)

    async def kill(self, replica: Replica) -> None:
        """SIGKILLs a replica (a crash); clients find out by their calls failing, and pick
        among the live ones from then on."""
        await replica.server.kill()
        replica.alive = False

    async def drain(self, replica: Replica) -> int:
        """SIGTERMs a replica (a deploy or a scale-in) and waits for it to exit; returns its
        exit code. From the signal on, clients send it nothing new, as a load balancer that
        dropped its endpoint (Kubernetes does so as the pod starts terminating); calls already
        on their way finish there."""
        replica.alive = False
        return await replica.server.terminate()

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.stubs.close()


# --- what the clients saw --------------------------------------------------------------------


@dataclass
class Observed:
    """Client-side counts and observations, and everything that must not happen."""

    counts: Counter[str] = field(default_factory=Counter)
    stream_ends: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    rescinded: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    offer_owner: dict[str, str] = field(default_factory=dict)  # offer id -> agent id
    completed: dict[str, tuple[str, str]] = field(default_factory=dict)  # iid -> (agent, hid)
    handoff_of_request: dict[str, str] = field(default_factory=dict)  # request id -> handoff
    offer_seen_at: dict[str, float] = field(default_factory=dict)  # offer id -> wall clock
    loop_lags: list[float] = field(default_factory=list)  # the client loop's, in seconds
    cancelled: set[str] = field(default_factory=set)  # handoffs a cancel succeeded for
    not_cancellable: set[str] = field(default_factory=set)  # handoffs a cancel was refused for
    violations: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)  # offers late, twice rescinded, ...

    def violation(self, what: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(what)

    def late(self, what: str) -> None:
        if len(self.liveness) < 200:
            self.liveness.append(what)


def describe_error(error: grpc.aio.AioRpcError) -> str:
    """CODE/REASON of a failed call, for counters ("-": no reason, e.g. a broken connection)."""
    return f"{error.code().name}/{error_details(error)['reason'] or '-'}"


# --- one agent app ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Temper:
    """How an agent answers offers."""

    decline: float = 0.10  # declines this share of offers
    miss: float = 0.04  # lets this share expire
    think: tuple[float, float] = (0.0, 0.2)  # seconds before answering
    handle: tuple[float, float] = (0.1, 1.5)  # seconds an interaction takes
    away_for: tuple[float, float] = (0.3, 1.0)  # pause before becoming available again


class SimAgent:
    """One agent app on one stream at a time."""

    def __init__(self, swarm: Swarm, agent_id: str, capacity: int, temper: Temper) -> None:
        self.swarm = swarm
        self.agent_id = agent_id
        self.capacity = capacity
        self.temper = temper
        self.rng = random.Random(f"{swarm.seed}/{agent_id}")
        self.replica: Replica | None = None
        self.token = ""
        self.outbox: Outbox | None = None
        self.generation = 0  # one per stream; answers scheduled on an older one are dropped
        self.drained = False  # the current stream said `drain`: move to another replica
        self.drained_from: set[str] = set()  # replicas that told this agent to move
        self.pending: dict[str, str] = {}  # offer id -> handoff id, on the current stream
        self.seen_offers: set[str] = set()
        self.rescinded_here: set[str] = set()  # offers the current stream took back
        # Offers of this agent that expired unanswered, as the streams said, since the server
        # last had reason to reset its count of misses (an answer, a status change).
        self.expired_unanswered = 0
        self.held: set[str] = set()  # interactions being worked on
        self.done: set[str] = set()  # interactions completed
        self.want_available = False  # a set_status(AVAILABLE) is scheduled
        self.connected = asyncio.Event()
        self.welcomed = False
        self.history: deque[str] = deque(maxlen=400)
        self._commands = 0

    # --- the session loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Keeps a session until the swarm stops: resume after a break, hello when the
        resume token is refused."""
        obs = self.swarm.observed
        failures = 0
        while not self.swarm.stopping:
            replica = self.swarm.cluster.pick(avoid=self.replica if failures else None)
            self.replica = replica
            resuming = bool(self.token)
            self.note(f"{'resume' if resuming else 'hello'} on {replica.name}")
            self.welcomed = False
            try:
                await self._session(replica)
                self.note("stream ended OK")
                if not self.swarm.stopping:
                    obs.stream_ends["OK"] += 1
                    obs.violation(f"{self.agent_id}: stream ended OK by itself: {self.story()}")
            except grpc.aio.AioRpcError as error:
                what = describe_error(error)
                self.note(f"stream ended {what}")
                if self.swarm.stopping:
                    break
                if (
                    not self.welcomed
                    and resuming
                    and what == "FAILED_PRECONDITION/RESUME_TOKEN_INVALID"
                ):
                    obs.counts["resume_refused"] += 1  # grace over or session ended: hello
                    self.token = ""
                    continue
                obs.stream_ends[what] += 1
                if (
                    what == "ABORTED/SESSION_REPLACED"
                    or error.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # it heartbeats
                    or error.code() not in RETRYABLE
                ):
                    obs.violation(f"{self.agent_id}: stream ended with {what}: {self.story()}")
            finally:
                self._detach()
            if self.swarm.stopping:
                break
            failures = 0 if self.welcomed else failures + 1
            obs.counts["reconnects"] += 1
            if self.drained:
                # Told to move: at once (no backoff) and elsewhere.
                self.drained = False
                failures = max(failures, 1)
                continue
            await asyncio.sleep(self.rng.uniform(0.05, 0.3) * min(failures + 1, 10))

    def note(self, what: str) -> None:
        """Keeps the agent's recent story, for failure messages."""
        self.history.append(f"{time.monotonic() - self.swarm.started:.2f} {what}")

    def story(self, last: int = 40) -> str:
        return " | ".join(list(self.history)[-last:])

    async def _session(self, replica: Replica) -> None:
        """One stream from hello/resume to its end."""
        outbox = Outbox()
        if self.token:
            first = ConnectRequest(
                resume=ConnectRequest.Resume(agent_id=self.agent_id, resume_token=self.token)
            )
        else:
            first = ConnectRequest(hello=ConnectRequest.Hello(agent_id=self.agent_id))
        outbox.put(first)
        call = replica.stubs.agents.Connect(
            outbox, metadata=replica.stubs.metadata_of(self.agent_id)
        )
        try:
            async for message in call:
                if not self.welcomed:
                    if message.WhichOneof("event") != "welcome":
                        self.swarm.observed.violation(f"{self.agent_id}: first is {message}")
                        return
                    self.welcomed = True
                    self._welcomed(message.welcome, outbox, resumed=first.HasField("resume"))
                else:
                    self._handle(message)
        finally:
            outbox.close()  # ends grpc's task that reads the outbox, whatever happened
            call.cancel()

    def _welcomed(
        self,
        welcome: ConnectResponse.Welcome,
        outbox: Outbox,
        *,
        resumed: bool,
    ) -> None:
        obs = self.swarm.observed
        if resumed and not welcome.resumed:
            obs.violation(f"{self.agent_id}: resume answered with a new session")
        obs.counts["resumes" if resumed else "hellos"] += 1
        self.note(
            f"welcome session={welcome.session_id[:8]} resumed={welcome.resumed} "
            f"state={agent_pb2.AgentState.Name(welcome.agent.state)} "
            f"held={[i.interaction_id[:8] for i in welcome.active_interactions]}"
        )
        self.token = welcome.resume_token
        self.generation += 1
        self.pending.clear()  # a new stream: earlier offers were rescinded
        self.rescinded_here.clear()
        self.outbox = outbox
        self.connected.set()
        for interaction in welcome.active_interactions:
            if interaction.interaction_id not in self.held | self.done:
                # Accepted on a stream that broke before the confirmation arrived.
                obs.counts["interactions_found_in_welcome"] += 1
            self._hold(interaction.interaction_id, interaction.details.handoff_id)
        if welcome.agent.state == agent_pb2.AGENT_STATE_AWAY:
            self._become_available_later()

    def _detach(self) -> None:
        self.outbox = None
        self.connected.clear()
        self.generation += 1

    def send(self, **command: Any) -> bool:
        """Queues a command on the current stream; False if there is none."""
        if self.outbox is None:
            return False
        self._commands += 1
        self.outbox.put(ConnectRequest(command_id=f"c{self._commands}", **command))
        return True

    def leave(self) -> None:
        """Half-closes the stream: a log-out."""
        if self.outbox is not None:
            self.outbox.close()

    # --- what the server says -----------------------------------------------------------

    def _handle(self, message: ConnectResponse) -> None:
        obs = self.swarm.observed
        kind = message.WhichOneof("event")
        if self.drained and kind == "offer":  # a draining replica's agents get no new work
            obs.violation(f"{self.agent_id}: an offer after the drain: {self.story()}")
        if kind == "offer":
            self._offered(message.offer)
        elif kind == "drain":
            assert self.replica is not None
            self.drained = True
            self.drained_from.add(self.replica.name)
            obs.counts["drains"] += 1
            if not message.drain.HasField("resume_before"):
                obs.counts["drains_without_deadline"] += 1
            self.note("drain")
        elif kind == "offer_rescinded":
            offer_id = message.offer_rescinded.offer_id
            self.pending.pop(offer_id, None)
            name = agent_service_pb2.RescindReason.Name(message.offer_rescinded.reason)
            obs.rescinded[name.removeprefix("RESCIND_REASON_")] += 1
            self.note(f"rescinded {offer_id[:8]} {name.removeprefix('RESCIND_REASON_')}")
            if offer_id in self.rescinded_here:
                obs.late(f"{self.agent_id}: offer {offer_id} rescinded twice: {self.story()}")
            self.rescinded_here.add(offer_id)
            if message.offer_rescinded.reason == agent_service_pb2.RESCIND_REASON_EXPIRED:
                self.expired_unanswered += 1
            elif message.offer_rescinded.reason == agent_service_pb2.RESCIND_REASON_DECLINED:
                self.expired_unanswered = 0  # a decline resets the server's count
        elif kind == "assignment_confirmed":
            interaction = message.assignment_confirmed.interaction
            self.pending.pop(interaction.interaction_id, None)
            self.expired_unanswered = 0
            obs.counts["assignments_confirmed"] += 1
            self._hold(interaction.interaction_id, interaction.details.handoff_id)
        elif kind == "status_changed":
            change = message.status_changed
            if change.status == agent_pb2.AGENT_STATUS_AWAY:
                if change.reason == agent_service_pb2.STATUS_CHANGE_REASON_MISSED_OFFERS:
                    obs.counts["set_away_for_misses"] += 1
                    if not self.expired_unanswered:
                        # Set away for offers it was never shown (or never told had expired).
                        obs.late(
                            f"{self.agent_id}: set away for misses it did not make: {self.story()}"
                        )
                self._become_available_later()
            if change.status == agent_pb2.AGENT_STATUS_AVAILABLE or (
                change.reason == agent_service_pb2.STATUS_CHANGE_REASON_MISSED_OFFERS
            ):
                self.expired_unanswered = 0
            if change.status != agent_pb2.AGENT_STATUS_AWAY:
                self.want_available = False
        elif kind == "command_rejected":
            rejected = message.command_rejected
            obs.rejected[rejected.reason] += 1
            offer_id = rejected.metadata.get("offer_id")
            if offer_id:
                self.pending.pop(offer_id, None)
        elif kind == "welcome":
            obs.violation(f"{self.agent_id}: a second welcome on one stream")

    def _offered(self, offer: agent_service_pb2.Offer) -> None:
        obs = self.swarm.observed
        owner = obs.offer_owner.setdefault(offer.offer_id, self.agent_id)
        if owner != self.agent_id:
            obs.violation(f"offer {offer.offer_id} went to {owner} and to {self.agent_id}")
        obs.offer_seen_at.setdefault(offer.offer_id, time.time())
        self.note(f"offer {offer.offer_id[:8]}")
        if offer.offer_id in self.seen_offers:
            obs.counts["offers_shown_again"] += 1
            if offer.offer_id in self.pending:
                return  # already being answered
        self.seen_offers.add(offer.offer_id)
        obs.counts["offers_seen"] += 1
        self.pending[offer.offer_id] = offer.details.handoff_id
        if len(self.pending) + len(self.held) > self.capacity:
            # Not a violation by itself: a withdrawal or a completion may still be on its
            # way to this client (the database trail decides).
            obs.counts["client_saw_more_than_capacity"] += 1
        roll = self.rng.random()
        if roll < self.temper.miss:
            obs.counts["offers_ignored"] += 1
            return
        accept = roll >= self.temper.miss + self.temper.decline
        delay = self.rng.uniform(*self.temper.think)
        asyncio.get_running_loop().call_later(
            delay, self._answer, offer.offer_id, self.generation, accept
        )

    def _answer(self, offer_id: str, generation: int, accept: bool) -> None:
        if generation != self.generation or offer_id not in self.pending:
            return  # the stream broke or the offer was withdrawn meanwhile
        obs = self.swarm.observed
        if accept:
            obs.counts["accepts_sent"] += 1
            self.send(accept_offer=ConnectRequest.AcceptOffer(offer_id=offer_id))
        else:
            obs.counts["declines_sent"] += 1
            reason = self.rng.choice(list(agent_service_pb2.DeclineReason.values())[1:])
            self.send(decline_offer=ConnectRequest.DeclineOffer(offer_id=offer_id, reason=reason))

    def _become_available_later(self) -> None:
        if self.want_available:
            return
        self.want_available = True
        asyncio.get_running_loop().call_later(
            self.rng.uniform(*self.temper.away_for), self._become_available
        )

    def _become_available(self) -> None:
        if not self.want_available or self.swarm.stopping:
            return
        self.want_available = False
        if self.send(set_status=ConnectRequest.SetStatus(status=agent_pb2.AGENT_STATUS_AVAILABLE)):
            self.swarm.observed.counts["set_available_again"] += 1
        # Without a stream the next welcome says AWAY and schedules this again.

    # --- the work -----------------------------------------------------------------------

    def _hold(self, interaction_id: str, handoff_id: str) -> None:
        if interaction_id in self.held or interaction_id in self.done:
            return
        self.held.add(interaction_id)
        self.swarm.spawn(self._work(interaction_id, handoff_id))

    async def _work(self, interaction_id: str, handoff_id: str) -> None:
        """Handles the interaction for a while, then completes it through any replica,
        retrying the same completion elsewhere when a call fails."""
        obs = self.swarm.observed
        await asyncio.sleep(self.rng.uniform(*self.temper.handle))
        request = agent_service_pb2.CompleteInteractionRequest(
            agent_id=self.agent_id,
            interaction_id=interaction_id,
            outcome=H.OUTCOME_RESOLVED,
            disposition_code="e2e/resolved",
        )
        replica: Replica | None = None
        try:
            for attempt in range(200):
                replica = self.swarm.cluster.pick(avoid=replica if attempt else None)
                try:
                    await replica.stubs.agents.CompleteInteraction(request, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    what = describe_error(error)
                    if error.code() in SERVER_ERRORS:
                        obs.violation(f"complete {interaction_id}: {what} {error.details()}")
                    if error.code() in RETRYABLE:
                        obs.retried[f"complete {what}"] += 1
                        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
                        continue
                    obs.violation(f"{self.agent_id}: completing {interaction_id}: {what}")
                    return
                obs.counts["completed"] += 1
                earlier = obs.completed.setdefault(interaction_id, (self.agent_id, handoff_id))
                if earlier != (self.agent_id, handoff_id):
                    obs.violation(f"interaction {interaction_id} completed twice: {earlier}")
                self.done.add(interaction_id)
                return
            obs.violation(f"{self.agent_id}: could not complete {interaction_id}")
        finally:
            self.held.discard(interaction_id)


# --- the bots --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotPlan:
    """What the bots do."""

    handoffs: int = 5000
    in_flight: int = 50
    resend: float = 0.05  # share of requests sent again (another replica) after success
    cancel: float = 0.03  # share of handoffs cancelled shortly after the request
    backlog: int = 0  # when > 0: at most this many requested handoffs not yet done


def handoff_requests(
    count: int, rng: random.Random
) -> list[handoff_service_pb2.RequestHandoffRequest]:
    """`count` requests, each with its own request_id; every one is answerable by dozens of
    agents (see `agent_profiles`), so none can run out of agents by declines and misses."""
    requests = []
    for i in range(count):
        skills = []
        if rng.random() < 0.9:
            skills = [
                H.SkillRequirement(skill=rng.choice(SKILLS), min_proficiency=rng.randint(1, 3))
            ]
        language = rng.choices(["", "en", "de"], weights=[85, 10, 5])[0]
        requests.append(
            handoff_service_pb2.RequestHandoffRequest(
                request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                conversation_id=f"conv-{i}",
                customer_id=f"cust-{i % 997}",
                interaction_type=rng.choice(INTERACTION_TYPES),
                required_skills=skills,
                language=language,
                urgency=rng.choice(URGENCIES),
                summary=f"Customer {i} asks for a human.",
                reason=H.HANDOFF_REASON_CUSTOMER_REQUEST,
            )
        )
    return requests


class Bots:
    """Requests handoffs through random replicas, a bounded number at a time."""

    def __init__(self, swarm: Swarm, plan: BotPlan) -> None:
        self.swarm = swarm
        self.plan = plan
        self.rng = random.Random(f"{swarm.seed}/bots")
        self.requests = handoff_requests(plan.handoffs, self.rng)
        self.answered = 0

    async def run(self) -> None:
        todo: asyncio.Queue[handoff_service_pb2.RequestHandoffRequest] = asyncio.Queue()
        for request in self.requests:
            todo.put_nowait(request)

        async def worker() -> None:
            while not todo.empty():
                request = todo.get_nowait()
                while self.plan.backlog and self.answered - self.done() >= self.plan.backlog:
                    await asyncio.sleep(0.25)
                await self.request(request)

        await asyncio.gather(*(worker() for _ in range(self.plan.in_flight)))

    async def _call(self, what: str, method: Callable[[Replica], Any]) -> Any:
        """Calls `method` on random live replicas until it succeeds; a failure that retrying
        cannot fix is raised."""
        obs = self.swarm.observed
        replica: Replica | None = None
        for attempt in range(200):
            replica = self.swarm.cluster.pick(avoid=replica if attempt else None)
            try:
                return await method(replica)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE:
                    raise
                if error.code() in SERVER_ERRORS:
                    obs.violation(f"{what}: {describe_error(error)} {error.details()}")
                obs.retried[f"{what} {describe_error(error)}"] += 1
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        raise AssertionError(f"{what} failed 200 times")

    async def request(self, request: handoff_service_pb2.RequestHandoffRequest) -> None:
        obs = self.swarm.observed

        def send(replica: Replica) -> Any:
            return replica.stubs.handoffs.RequestHandoff(request, timeout=CALL_TIMEOUT)

        try:
            handoff = (await self._call("request", send)).handoff
        except grpc.aio.AioRpcError as error:
            obs.violation(f"request {request.request_id}: {describe_error(error)}")
            return
        self.answered += 1
        obs.counts["handoffs_requested"] += 1
        self._same_handoff(request.request_id, handoff.handoff_id)
        roll = self.rng.random()
        if roll < self.plan.resend:
            # The same request again (a bot that never saw the answer): the same handoff.
            again = (await self._call("resend", send)).handoff
            obs.counts["requests_resent"] += 1
            self._same_handoff(request.request_id, again.handoff_id)
        elif roll < self.plan.resend + self.plan.cancel:
            self.swarm.spawn(self._cancel_later(handoff.handoff_id))

    def done(self) -> int:
        """Handoffs the clients saw end (completed by an agent, or cancelled)."""
        counts = self.swarm.observed.counts
        return counts["completed"] + counts["cancelled"]

    def _same_handoff(self, request_id: str, handoff_id: str) -> None:
        obs = self.swarm.observed
        earlier = obs.handoff_of_request.setdefault(request_id, handoff_id)
        if earlier != handoff_id:
            obs.violation(f"request {request_id} gave handoffs {earlier} and {handoff_id}")

    async def _cancel_later(self, handoff_id: str) -> None:
        """The customer leaves: cancels unless an agent already took the handoff."""
        obs = self.swarm.observed
        await asyncio.sleep(self.rng.uniform(0.0, 1.5))
        request = handoff_service_pb2.CancelHandoffRequest(handoff_id=handoff_id)

        def cancel(replica: Replica) -> Any:
            return replica.stubs.handoffs.CancelHandoff(request, timeout=CALL_TIMEOUT)

        try:
            response = await self._call("cancel", cancel)
        except grpc.aio.AioRpcError as error:
            if error_details(error)["reason"] == "HANDOFF_NOT_CANCELLABLE":
                obs.not_cancellable.add(handoff_id)
                obs.counts["cancels_refused"] += 1
            else:
                obs.violation(f"cancel {handoff_id}: {describe_error(error)}")
            return
        if response.handoff.state != H.HANDOFF_STATE_CANCELLED:
            obs.violation(f"cancel {handoff_id} answered {response.handoff}")
        obs.cancelled.add(handoff_id)
        obs.counts["cancelled"] += 1


# --- the whole crowd -------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentProfile:
    agent_id: str
    skills: dict[str, int]
    languages: tuple[str, ...]
    capacity: int
    temper: Temper


def agent_profiles(count: int, rng: random.Random, *, flaky: int = 10) -> list[AgentProfile]:
    """`count` agents with capacity 1-3 and two of the three skills; `flaky` of them miss a
    third of their offers (so some are set away for missed offers)."""
    profiles = []
    for i in range(count):
        skills = {skill: rng.randint(1, 5) for skill in rng.sample(SKILLS, 2)}
        languages = ("en", "de") if rng.random() < 0.4 else ("en",)
        temper = Temper(decline=0.10, miss=0.35) if i < flaky else Temper()
        profiles.append(
            AgentProfile(f"agent-{i:03d}", skills, languages, rng.randint(1, 3), temper)
        )
    return profiles


class Swarm:
    """Agents and bots against a cluster, and what they observed."""

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.cluster = cluster
        self.seed = seed
        self.observed = Observed()
        self.agents: list[SimAgent] = []
        self.stopping = False
        self.started = time.monotonic()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._agent_tasks: list[asyncio.Task[None]] = []
        self._heartbeats: asyncio.Task[None] | None = None
        self._lag: asyncio.Task[None] | None = None

    def spawn(self, coroutine: Any) -> None:
        """Runs a background coroutine that the swarm awaits before it stops."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._crashed)

    def _crashed(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.observed.violation(f"client task failed: {task.exception()!r}")

    async def create_agents(self, profiles: list[AgentProfile]) -> None:
        """Creates the agents through random replicas."""

        async def create(profile: AgentProfile) -> None:
            request = pool_service_pb2.CreateAgentRequest(
                agent_id=profile.agent_id,
                agent=agent_pb2.Agent(
                    skills=[
                        agent_pb2.AgentSkill(skill=s, proficiency=p)
                        for s, p in profile.skills.items()
                    ],
                    languages=list(profile.languages),
                    capacity=profile.capacity,
                ),
            )
            await self.cluster.pick().stubs.pool.CreateAgent(request, timeout=CALL_TIMEOUT)

        await asyncio.gather(*(create(p) for p in profiles))
        self.agents = [SimAgent(self, p.agent_id, p.capacity, p.temper) for p in profiles]

    async def connect_agents(self, heartbeat_every: float, timeout: float = 60.0) -> None:
        """Starts every agent on a random replica; returns once all are welcomed."""
        for agent in self.agents:
            task = asyncio.get_running_loop().create_task(agent.run(), name=agent.agent_id)
            task.add_done_callback(self._crashed)
            self._agent_tasks.append(task)
        self._heartbeats = asyncio.create_task(self._beat(heartbeat_every))
        self._lag = asyncio.create_task(self._watch_lag())
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(agent.connected.wait() for agent in self.agents))

    async def _watch_lag(self, every: float = 0.02) -> None:
        """How late this client's event loop wakes up (its own lag delays what it sees)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + every
            await asyncio.sleep(every)
            self.observed.loop_lags.append(loop.time() - due)

    async def _beat(self, every: float) -> None:
        """Every connected agent heartbeats every `every` seconds (spread over the period)."""
        while True:
            for agent in self.agents:
                agent.send(heartbeat=ConnectRequest.Heartbeat())
                await asyncio.sleep(every / max(len(self.agents), 1))

    def replica_of(self) -> Counter[str]:
        """How many agents are connected to each replica now."""
        return Counter(a.replica.name for a in self.agents if a.replica and a.outbox)

    async def stop(self, timeout: float = 60.0) -> None:
        """Lets work in progress finish, then logs every agent out and waits for the tasks."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.stopping = True
        for task in (self._heartbeats, self._lag):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for agent in self.agents:
            agent.leave()
        running = [task for task in self._agent_tasks if not task.done()]
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                self.observed.violation(f"{len(pending)} agents did not log out in {timeout} s")
        for task in list(self._tasks):
            task.cancel()


# --- the database ----------------------------------------------------------------------------

AUDIT_SQL = """
CREATE SEQUENCE e2e_audit_seq;  -- one order for both trails
CREATE TABLE e2e_offer_audit (
    seq bigint PRIMARY KEY DEFAULT nextval('e2e_audit_seq'),
    offer_id text NOT NULL,
    handoff_id text NOT NULL,
    agent_id text NOT NULL,
    old_state text,
    new_state text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE e2e_handoff_audit (
    seq bigint PRIMARY KEY DEFAULT nextval('e2e_audit_seq'),
    handoff_id text NOT NULL,
    old_state text,
    new_state text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION e2e_offer_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO e2e_offer_audit (offer_id, handoff_id, agent_id, old_state, new_state)
        VALUES (NEW.id, NEW.handoff_id, NEW.agent_id, NULL, NEW.state);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO e2e_offer_audit (offer_id, handoff_id, agent_id, old_state, new_state)
        VALUES (OLD.id, OLD.handoff_id, OLD.agent_id, OLD.state, NULL);
    ELSIF NEW.state IS DISTINCT FROM OLD.state OR NEW.agent_id IS DISTINCT FROM OLD.agent_id
          OR NEW.handoff_id IS DISTINCT FROM OLD.handoff_id THEN
        INSERT INTO e2e_offer_audit (offer_id, handoff_id, agent_id, old_state, new_state)
        VALUES (NEW.id, NEW.handoff_id, NEW.agent_id, OLD.state, NEW.state);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION e2e_handoff_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO e2e_handoff_audit (handoff_id, old_state, new_state)
        VALUES (NEW.id, NULL, NEW.state);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO e2e_handoff_audit (handoff_id, old_state, new_state)
        VALUES (OLD.id, OLD.state, NULL);
    ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO e2e_handoff_audit (handoff_id, old_state, new_state)
        VALUES (NEW.id, OLD.state, NEW.state);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER e2e_offer_audit AFTER INSERT OR UPDATE OR DELETE ON offers
    FOR EACH ROW EXECUTE FUNCTION e2e_offer_audit();
CREATE TRIGGER e2e_handoff_audit AFTER INSERT OR UPDATE OR DELETE ON handoffs
    FOR EACH ROW EXECUTE FUNCTION e2e_handoff_audit();
"""


async def install_audit(conn: asyncpg.Connection) -> None:
    """The audit trail of offers and handoffs (test database only; the schema is migrated)."""
    await conn.execute(AUDIT_SQL)


OFFER_MOVES = {
    ("PENDING", "ACCEPTED"),
    ("PENDING", "DECLINED"),
    ("PENDING", "EXPIRED"),
    ("PENDING", "RESCINDED"),
    ("ACCEPTED", "COMPLETED"),
    ("ACCEPTED", "REVOKED"),
}
HANDOFF_MOVES = {
    ("QUEUED", "OFFERED"),
    ("QUEUED", "CANCELLED"),
    ("OFFERED", "QUEUED"),
    ("OFFERED", "ASSIGNED"),
    ("OFFERED", "CANCELLED"),
    ("ASSIGNED", "COMPLETED"),
    ("ASSIGNED", "QUEUED"),
}
TERMINAL = {"COMPLETED", "CANCELLED"}
HANDOFF_LIVE = "two live offers of one handoff"
HANDOFF_HELD = "two assignments of one handoff"
AGENT_LOAD = "an agent over capacity"


@dataclass
class DatabaseReport:
    """What the database says happened, and every broken guarantee."""

    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    timestamp_overlaps: Counter[str] = field(default_factory=Counter)  # rows' own times

    def violation(self, what: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(what)


async def terminal_counts(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM handoffs GROUP BY state")
    return Counter({row["state"]: row["n"] for row in rows})


async def stuck_handoffs(conn: asyncpg.Connection, limit: int = 20) -> str:
    """The handoffs that are not terminal, with their offers, for a failure message."""
    rows = await conn.fetch(
        """
        SELECT h.id, h.state, h.agent_id, h.requeue_count, h.required_skills, h.language,
               (SELECT string_agg(o.agent_id || ':' || o.state, ' ' ORDER BY o.created_at)
                  FROM offers o WHERE o.handoff_id = h.id) AS offers
          FROM handoffs h WHERE h.state NOT IN ('COMPLETED', 'CANCELLED')
         ORDER BY h.created_at LIMIT $1
        """,
        limit,
    )
    agents = await conn.fetch(
        "SELECT status, connected, count(*) AS n, sum(load) AS load FROM agents "
        "GROUP BY status, connected"
    )
    lines = [f"  {dict(row)}" for row in rows]
    lines.append(f"  agents: {[dict(a) for a in agents]}")
    return "\n".join(lines)


def _overlaps(
    intervals: list[tuple[datetime, datetime, str]], limit: int
) -> list[tuple[datetime, int, str]]:
    """Instants at which more than `limit` of the intervals are live."""
    events = []
    for start, end, label in intervals:
        events.append((start, 1, label))
        events.append((end, -1, label))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same instant
    live, found = 0, []
    for at, step, label in events:
        live += step
        if live > limit:
            found.append((at, live, label))
    return found


async def check_database(
    conn: asyncpg.Connection, observed: Observed, requests: list[Any]
) -> DatabaseReport:
    """Every safety guarantee (docs/architecture.md, "Where each guarantee is kept") over the
    whole run, from the audit trail and the tables; also compares them with what the clients
    saw."""
    report = DatabaseReport()
    capacity = {r["id"]: r["capacity"] for r in await conn.fetch("SELECT id, capacity FROM agents")}
    handoffs = {r["id"]: r for r in await conn.fetch("SELECT * FROM handoffs")}
    offers = {r["id"]: r for r in await conn.fetch("SELECT * FROM offers")}
    offer_trail = await conn.fetch("SELECT * FROM e2e_offer_audit ORDER BY seq")
    handoff_trail = await conn.fetch("SELECT * FROM e2e_handoff_audit ORDER BY seq")

    # (e) one handoff per request_id the bots sent, none more, each the one the bots heard of.
    sent = {r.request_id for r in requests}
    stored = {h["request_id"]: h["id"] for h in handoffs.values()}
    if len(handoffs) != len(sent) or set(stored) != sent:
        report.violation(
            f"{len(handoffs)} handoffs stored for {len(sent)} request ids; "
            f"unknown: {len(set(stored) - sent)}, missing: {len(sent - set(stored))}"
        )
    for request_id, handoff_id in observed.handoff_of_request.items():
        if stored.get(request_id) != handoff_id:
            report.violation(
                f"request {request_id}: bots got {handoff_id}, stored {stored.get(request_id)}"
            )

    # (a), (b), (c) and (d) from the trails, in the order the writes took their locks.
    live_of_handoff: Counter[str] = Counter()  # pending + accepted offers of a handoff
    held_of_handoff: Counter[str] = Counter()  # accepted offers of a handoff
    load_of_agent: Counter[str] = Counter()  # pending + accepted offers of an agent
    state_of_offer: dict[str, str] = {}
    state_of_handoff: dict[str, str] = {}
    terminal_entries: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    def offer_moved(row: asyncpg.Record) -> None:
        offer_id, handoff_id, agent_id = row["offer_id"], row["handoff_id"], row["agent_id"]
        old, new, seq = row["old_state"], row["new_state"], row["seq"]
        report.counts[f"offer {old or 'new'}->{new or 'deleted'}"] += 1
        if old is None:
            if new != "PENDING" or offer_id in state_of_offer:
                report.violation(f"offer {offer_id} created as {new} (seq {seq})")
                return
            if state_of_handoff.get(handoff_id) in TERMINAL:
                report.violation(f"offer {offer_id} made for a finished handoff (seq {seq})")
            live_of_handoff[handoff_id] += 1
            load_of_agent[agent_id] += 1
        elif (old, new) not in OFFER_MOVES or state_of_offer.get(offer_id) != old:
            report.violation(
                f"offer {offer_id}: {old} -> {new}, was {state_of_offer.get(offer_id)}"
            )
            return
        elif new == "ACCEPTED":
            held_of_handoff[handoff_id] += 1
        else:
            live_of_handoff[handoff_id] -= 1
            load_of_agent[agent_id] -= 1
            if old == "ACCEPTED":
                held_of_handoff[handoff_id] -= 1
        state_of_offer[offer_id] = new
        if live_of_handoff[handoff_id] > 1:
            live = live_of_handoff[handoff_id]
            report.violation(f"handoff {handoff_id} had {live} live offers at once (seq {seq})")
        if held_of_handoff[handoff_id] > 1:
            report.violation(f"handoff {handoff_id} was assigned twice at once (seq {seq})")
        if load_of_agent[agent_id] > capacity.get(agent_id, 0):
            report.violation(
                f"agent {agent_id} held {load_of_agent[agent_id]} > capacity "
                f"{capacity.get(agent_id)} (seq {seq})"
            )
        peak[agent_id] = max(peak[agent_id], load_of_agent[agent_id])

    def handoff_moved(row: asyncpg.Record) -> None:
        handoff_id, old, new, seq = (
            row["handoff_id"],
            row["old_state"],
            row["new_state"],
            row["seq"],
        )
        if old is None:
            if new != "QUEUED" or handoff_id in state_of_handoff:
                report.violation(f"handoff {handoff_id} created as {new} (seq {seq})")
        elif (old, new) not in HANDOFF_MOVES or state_of_handoff.get(handoff_id) != old:
            was = state_of_handoff.get(handoff_id)
            report.violation(f"handoff {handoff_id}: {old} -> {new}, was {was} (seq {seq})")
        if new == "CANCELLED" and live_of_handoff[handoff_id]:
            # A cancel withdraws the pending offer in the same transaction, before.
            report.violation(
                f"handoff {handoff_id} was CANCELLED with {live_of_handoff[handoff_id]} live "
                f"offer(s) left (seq {seq})"
            )
        if new in TERMINAL:
            terminal_entries[handoff_id] += 1
        state_of_handoff[handoff_id] = new

    trail = sorted(
        [(row["seq"], offer_moved, row) for row in offer_trail]
        + [(row["seq"], handoff_moved, row) for row in handoff_trail],
        key=lambda entry: entry[0],
    )
    for _, step, row in trail:
        step(row)
    report.counts["agents_at_full_capacity_once"] = sum(
        1 for a, p in peak.items() if p == capacity.get(a)
    )
    report.counts["agents_with_capacity_over_1_used_fully"] = sum(
        1 for a, p in peak.items() if p == capacity.get(a) and p > 1
    )
    for offer_id, row in offers.items():
        if state_of_offer.get(offer_id) != row["state"]:
            report.violation(
                f"offer {offer_id} is {row['state']}, trail ends at {state_of_offer.get(offer_id)}"
            )
    if set(state_of_offer) != set(offers):
        report.violation("the trail and the offers table name different offers")

    completed_offers: dict[str, list[str]] = defaultdict(list)
    for offer_id, row in offers.items():
        if row["state"] == "COMPLETED":
            completed_offers[row["handoff_id"]].append(offer_id)
        if row["state"] in ("PENDING", "ACCEPTED"):
            h = handoffs[row["handoff_id"]]
            report.violation(
                f"offer {offer_id} of {row['agent_id']} still {row['state']} at the end, for "
                f"handoff {h['id']} which is {h['state']} (offer_id {h['offer_id']})"
            )
    for handoff_id, h in handoffs.items():
        report.counts[f"handoffs {h['state']}"] += 1
        report.counts["requeued (revoked) interactions"] += h["requeue_count"]
        if h["state"] not in TERMINAL:
            report.violation(f"handoff {handoff_id} ended the run {h['state']}")
        if terminal_entries[handoff_id] != 1:
            entries = terminal_entries[handoff_id]
            report.violation(f"handoff {handoff_id} entered a terminal state {entries} times")
        if state_of_handoff.get(handoff_id) != h["state"]:
            last = state_of_handoff.get(handoff_id)
            report.violation(f"handoff {handoff_id} is {h['state']}, trail ends at {last}")
        done = completed_offers.get(handoff_id, [])
        if h["state"] == "COMPLETED":
            if done != [h["offer_id"]]:
                report.violation(
                    f"handoff {handoff_id} COMPLETED by offers {done}, records {h['offer_id']}"
                )
            elif offers[done[0]]["agent_id"] != h["agent_id"]:
                by = offers[done[0]]["agent_id"]
                report.violation(f"handoff {handoff_id} completed by {by}, records {h['agent_id']}")
        elif done:
            report.violation(f"handoff {handoff_id} is {h['state']} with completed offers {done}")

    # Nothing is held any more: every agent's load counter is back at zero.
    for row in await conn.fetch("SELECT id, load FROM agents WHERE load <> 0"):
        report.violation(f"agent {row['id']} ends with load {row['load']}")

    # The clients' view agrees: each completion they saw is the one recorded; cancels that
    # succeeded cancelled, refused ones completed.
    for interaction_id, (agent_id, handoff_id) in observed.completed.items():
        h = handoffs.get(handoff_id)
        if (
            h is None
            or h["state"] != "COMPLETED"
            or h["offer_id"] != interaction_id
            or h["agent_id"] != agent_id
        ):
            report.violation(
                f"{agent_id} completed {interaction_id} of {handoff_id}; stored {h and dict(h)}"
            )
    completed_handoffs = [h for h in handoffs.values() if h["state"] == "COMPLETED"]
    if len(observed.completed) != len(completed_handoffs):
        report.violation(
            f"clients completed {len(observed.completed)} interactions, "
            f"{len(completed_handoffs)} handoffs are COMPLETED"
        )
    for handoff_id in observed.cancelled:
        if handoffs[handoff_id]["state"] != "CANCELLED":
            report.violation(
                f"cancel of {handoff_id} succeeded, it ended {handoffs[handoff_id]['state']}"
            )
    for handoff_id in observed.not_cancellable:
        if handoffs[handoff_id]["state"] != "COMPLETED":
            report.violation(
                f"cancel of {handoff_id} refused, it ended {handoffs[handoff_id]['state']}"
            )
    cancelled = {h for h, row in handoffs.items() if row["state"] == "CANCELLED"}
    if cancelled != observed.cancelled:
        report.violation(
            f"cancelled by the bots {len(observed.cancelled)}, stored {len(cancelled)}"
        )

    _check_timestamps(report, offers, offer_trail, capacity)
    return report


async def check_delivery(
    conn: asyncpg.Connection, observed: Observed, bound: timedelta
) -> DatabaseReport:
    """Every offer reached its agent's stream within `bound` of being made, or
    was taken back within `bound` without being shown; none expired unseen. Times are the
    audit trail's (the statement's clock) against the clients' wall clock on the same
    machine. Returns the delivery times in `counts` (milliseconds) and each breach."""
    report = DatabaseReport()
    rows = await conn.fetch(
        """
        SELECT made.offer_id, made.agent_id, made.at AS made_at, ended.new_state,
               ended.at AS ended_at
          FROM e2e_offer_audit made
          LEFT JOIN LATERAL (
                SELECT a.new_state, a.at FROM e2e_offer_audit a
                 WHERE a.offer_id = made.offer_id AND a.old_state = 'PENDING'
                 ORDER BY a.seq LIMIT 1) ended ON true
         WHERE made.old_state IS NULL
        """
    )
    delays: list[float] = []
    for row in rows:
        made = row["made_at"].timestamp()
        seen = observed.offer_seen_at.get(row["offer_id"])
        if seen is not None:
            delays.append(seen - made)
            if seen - made > bound.total_seconds():
                report.counts["offers shown late"] += 1
                report.violation(
                    f"offer {row['offer_id']} reached {row['agent_id']} {seen - made:.2f} s "
                    f"after it was made (it ended {row['new_state']})"
                )
            continue
        report.counts[f"offers never shown, ended {row['new_state']}"] += 1
        if row["new_state"] in ("EXPIRED", None):
            report.violation(
                f"offer {row['offer_id']} to {row['agent_id']} ended {row['new_state']} "
                "without ever reaching the agent's stream"
            )
        elif (row["ended_at"] - row["made_at"]) > bound:
            report.violation(
                f"offer {row['offer_id']} to {row['agent_id']} was neither shown nor taken "
                f"back for {(row['ended_at'] - row['made_at']).total_seconds():.2f} s "
                f"(ended {row['new_state']})"
            )
    delays.sort()
    if delays:
        for name, q in (("p50", 0.50), ("p99", 0.99)):
            report.counts[f"delivery ms {name}"] = round(
                1000 * delays[min(len(delays) - 1, int(q * len(delays)))]
            )
        report.counts["delivery ms max"] = round(1000 * delays[-1])
    report.counts["offers shown"] = len(delays)
    lags = sorted(observed.loop_lags)
    if lags:
        report.counts["client loop lag ms p99"] = round(1000 * lags[int(0.99 * (len(lags) - 1))])
        report.counts["client loop lag ms max"] = round(1000 * lags[-1])
    return report


def _check_timestamps(
    report: DatabaseReport,
    offers: dict[str, Any],
    offer_trail: list[Any],
    capacity: dict[str, int],
) -> None:
    """(a), (b), (c) once more, from the offers' own timestamps: an offer is live until it
    stops being PENDING (decided_at if it was answered, ended_at if it expired or was
    rescinded), and held from its accept until ended_at.

    The rows' times are their transactions' start times: a write that waited behind another
    carries an earlier time than the write it waited for, by as long as its transaction had
    run (seconds, on a saturated machine). So each interval begins at the clock time its
    write happened (the audit trail's), and ends at the row's time, never later than the
    true end: in a correct run no two overlap, with no tolerance to tune. Overlaps of the
    rows' own times are counted in `timestamp_overlaps`, for the record."""
    written: dict[tuple[str, str | None], datetime] = {}
    for row in offer_trail:
        written.setdefault(
            (row["offer_id"], row["new_state"] if row["old_state"] else None), row["at"]
        )
    raw: dict[str, dict[str, list[tuple[datetime, datetime, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    exact: dict[str, dict[str, list[tuple[datetime, datetime, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )

    def live(
        what: str, key: str, start: datetime, began: datetime, end: datetime, oid: str
    ) -> None:
        raw[what][key].append((start, end, oid))
        exact[what][key].append((began, max(began, end), oid))

    for offer_id, o in offers.items():
        answered = o["state"] in ("ACCEPTED", "DECLINED", "COMPLETED", "REVOKED")
        pending_end = o["decided_at"] if answered else o["ended_at"]
        if pending_end is None or o["state"] in ("PENDING", "ACCEPTED"):
            continue  # reported above as still live
        made = written[offer_id, None]
        live(HANDOFF_LIVE, o["handoff_id"], o["created_at"], made, pending_end, offer_id)
        end = pending_end
        if o["state"] in ("COMPLETED", "REVOKED"):
            accepted = written[offer_id, "ACCEPTED"]
            live(HANDOFF_HELD, o["handoff_id"], o["decided_at"], accepted, o["ended_at"], offer_id)
            end = o["ended_at"]
        live(AGENT_LOAD, o["agent_id"], o["created_at"], made, end, offer_id)
    limits = {HANDOFF_LIVE: lambda _: 1, HANDOFF_HELD: lambda _: 1, AGENT_LOAD: capacity.get}
    for what, limit in limits.items():
        for key, intervals in raw[what].items():
            if _overlaps(intervals, limit(key)):
                report.timestamp_overlaps[what] += 1
        for key, intervals in exact[what].items():
            found = _overlaps(intervals, limit(key))
            if found:
                report.violation(f"{what} by timestamps: {key} at {found[0]}")
    report.counts["offers per handoff, max"] = max(
        (len(intervals) for intervals in raw[HANDOFF_LIVE].values()), default=0
    )
