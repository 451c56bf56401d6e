"""The simulated people, over gRPC: gig agents on their streams, and bots asking for humans.

`AgentPlayer` is one agent app: logs in (hello), heartbeats, answers offers after its delay
(accepting, declining or letting some expire, as its group says), works each interaction for a
handle time drawn from its type, completes it, and logs out and in again over the run
(churn), finishing its work before it leaves. A broken stream is resumed with the resume token.

`Bots` send handoffs with Poisson arrivals per interaction type, cancel those whose customer's
patience runs out first, and read every handoff's final record from the server at the end.

`Customers` rate what they got: when an agent completes an interaction, the chat platform that
agent and bot share knows the human conversation is over, and the customer's bot reports the
customer's rating with RecordFeedback a moment later (or never, for customers who do not
rate). It is played beside the agents, in their processes, where completions happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from humanline.client.agents import Outbox
from humanline.sim.report import (
    AgentRecord,
    HandoffRecord,
    Observations,
    OutcomeRecord,
    RatingRecord,
)
from humanline.sim.scenario import AgentGroup, InteractionType, Rating, Scenario
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    handoff_pb2,
    handoff_service_pb2,
    handoff_service_pb2_grpc,
)

CALL_TIMEOUT = 10.0
RETRY_DELAY = (0.2, 1.0)
# RecordFeedback is tried this many times, waiting twice as long after each failure.
FEEDBACK_ATTEMPTS = 5
FEEDBACK_BACKOFF = 0.25  # seconds before the first retry (jittered: 0.5-1.5 times)
RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # the same feedback again is idempotent
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # over the caller's rate limit
)
T = TypeVar("T")
# How the server confirms an offer's end to its agent, for those that count against it.
OUTCOMES = {
    agent_service_pb2.RESCIND_REASON_DECLINED: "declined",
    agent_service_pb2.RESCIND_REASON_EXPIRED: "missed",
}
FINISHED = (
    handoff_pb2.HANDOFF_STATE_COMPLETED,
    handoff_pb2.HANDOFF_STATE_CANCELLED,
    handoff_pb2.HANDOFF_STATE_EXPIRED,
)


def streams(seed: int, *names: str) -> random.Random:
    """A random stream of its own for one part of a run (one type's arrivals, one agent's
    log-ins): the same draws in every run with `seed`, whatever the other parts draw
    meanwhile. Two runs of a scenario then meet the same customers and the same comings and
    goings of agents (common random numbers), and differ by what the server did."""
    return random.Random("/".join((str(seed), *names)))


def urgency_name(value: int) -> str:
    return handoff_pb2.Urgency.Name(value).removeprefix("URGENCY_")


@dataclass
class AgentPlayer:
    """One gig agent of a group, from its first log-in to the end of the run."""

    agent_id: str
    group: AgentGroup
    types: dict[str, InteractionType]
    stub: agent_service_pb2_grpc.AgentServiceStub
    rng: random.Random  # how it answers offers
    presence: random.Random  # when it logs in and out, a stream of its own (see `streams`)
    seen: Observations
    until: float  # monotonic time at which the agent logs out for good
    scenario: Scenario | None = None  # its changes of resolution rates over the run
    started: float = 0.0  # epoch seconds of the run's first possible arrival
    metadata: tuple[tuple[str, str], ...] = ()  # authenticates the agent's stream
    customers: Customers | None = None  # told of each completion, to rate it
    online_seconds: float = 0.0
    busy_slot_seconds: float = 0.0
    _outbox: Outbox | None = None
    _token: str = ""
    _leaving: bool = False
    _moving: bool = False  # the server said `drain`: resume elsewhere at once
    _work: set[asyncio.Task[None]] = field(default_factory=set)
    _answered: set[str] = field(default_factory=set)
    _offers: dict[str, _Offered] = field(default_factory=dict)  # by offer id
    _chores: set[asyncio.Future[None]] = field(default_factory=set)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _leaving_at: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Plays the agent until `until` or `stop()`; then logs out once its work is done."""
        online = self.presence.random() < self.group.online_at_start
        while not self._over():
            if not online:
                await self._pause(self.group.offline.sample(self.presence))
                if self._over():
                    break
            stay = self.group.online.sample(self.presence) if self.group.online else None
            leave_at = min(self.until, time.monotonic() + stay) if stay is not None else self.until
            await self._session(leave_at)
            online = False
        self.seen.agents.append(
            AgentRecord(
                self.group.name, self.group.capacity, self.online_seconds, self.busy_slot_seconds
            )
        )

    def stop(self) -> None:
        """The run is over: log out (after the work in hand) and stay out."""
        self.until = min(self.until, time.monotonic())
        self._stopped.set()
        if self._leaving_at is not None:
            self._leaving_at.cancel()
            self._start_leaving()

    def _over(self) -> bool:
        return self._stopped.is_set() or time.monotonic() >= self.until

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._stopped.wait(), max(0.0, min(seconds, self.until - time.monotonic()))
            )

    async def _session(self, leave_at: float) -> None:
        """Logged in until `leave_at`, then away (no new offers) until its work is done, then
        logged out; resumes the session when the stream breaks meanwhile."""
        started = time.monotonic()
        self._token, self._leaving = "", False
        self._leaving_at = asyncio.get_running_loop().call_at(
            _loop_time(leave_at), self._start_leaving
        )
        try:
            while True:
                try:
                    await self._stream()
                    return  # logged out
                except grpc.aio.AioRpcError as error:
                    self.seen.errors[f"agent stream {error.code().name}"] += 1
                    if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                        self._token = ""  # resume refused: log in afresh
                    if self._over() and not self._work:
                        return
                    if self._moving:  # a planned move: no backoff
                        self._moving = False
                        continue
                    await asyncio.sleep(self.rng.uniform(*RETRY_DELAY))
        finally:
            self._leaving_at.cancel()
            self._leaving_at = None
            self.online_seconds += time.monotonic() - started

    async def _stream(self) -> None:
        outbox = Outbox()
        first = agent_service_pb2.ConnectRequest()
        if self._token:
            first.resume.agent_id, first.resume.resume_token = self.agent_id, self._token
        else:
            first.hello.agent_id = self.agent_id
        outbox.put(first)
        call = self.stub.Connect(outbox, metadata=self.metadata)
        beats: asyncio.Task[None] | None = None
        try:
            async for message in call:
                kind = message.WhichOneof("event")
                if kind == "welcome":
                    self._token = message.welcome.resume_token
                    self._outbox = outbox
                    every = max(
                        message.welcome.heartbeat_interval.ToTimedelta().total_seconds() / 3, 0.5
                    )
                    beats = asyncio.create_task(self._heartbeats(outbox, every))
                    for interaction in message.welcome.active_interactions:
                        self._hold(interaction)
                    if self._leaving:
                        self._start_leaving()  # again, on the resumed stream
                elif kind == "offer":
                    self._offered(message.offer)
                elif kind == "assignment_confirmed":
                    interaction = message.assignment_confirmed.interaction
                    self._outcome(interaction.interaction_id, "accepted")
                    self._hold(interaction)
                elif kind == "offer_rescinded":
                    rescinded = message.offer_rescinded
                    self._outcome(rescinded.offer_id, OUTCOMES.get(rescinded.reason))
                elif kind == "drain":
                    self._moving = True
        finally:
            self._outbox = None
            if beats is not None:
                beats.cancel()
            outbox.close()
            call.cancel()

    async def _heartbeats(self, outbox: Outbox, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            outbox.put(
                agent_service_pb2.ConnectRequest(
                    heartbeat=agent_service_pb2.ConnectRequest.Heartbeat()
                )
            )

    def _send(self, request: agent_service_pb2.ConnectRequest) -> None:
        if self._outbox is not None:
            request.command_id = uuid.uuid4().hex
            self._outbox.put(request)

    def _offered(self, offer: agent_service_pb2.Offer) -> None:
        if offer.offer_id in self._answered:
            return  # shown again after a resume: already answered
        self._answered.add(offer.offer_id)
        self._offers[offer.offer_id] = _Offered(
            (offer.details.interaction_type, urgency_name(offer.details.urgency)),
            offer.details.handoff_id,
            _seconds(offer.offer_time),
        )
        roll = self.rng.random()
        if roll < self.group.miss:
            return  # lets it expire
        decline = roll < self.group.miss + self.group.decline
        delay = self.group.accept_delay.sample(self.rng)
        asyncio.get_running_loop().call_later(delay, self._answer, offer.offer_id, decline)

    def _outcome(self, offer_id: str, result: str | None) -> None:
        """What became of an offer, as the server confirmed it (None: nothing to count)."""
        offered = self._offers.pop(offer_id, None)
        if offered is not None and result is not None:
            self.seen.offers[(*offered.key, result)] += 1
            if result == "accepted":
                self.seen.offered[offered.handoff_id] = offered.at
                self.seen.taken_by[offered.handoff_id] = self.group.name

    def _answer(self, offer_id: str, decline: bool) -> None:
        if decline:
            no = agent_service_pb2.ConnectRequest.DeclineOffer(
                offer_id=offer_id, reason=agent_service_pb2.DECLINE_REASON_BUSY
            )
            self._send(agent_service_pb2.ConnectRequest(decline_offer=no))
        else:
            accept = agent_service_pb2.ConnectRequest.AcceptOffer(offer_id=offer_id)
            self._send(agent_service_pb2.ConnectRequest(accept_offer=accept))

    def _hold(self, interaction: agent_service_pb2.Interaction) -> None:
        if any(task.get_name() == interaction.interaction_id for task in self._work):
            return
        task = asyncio.create_task(self._handle(interaction), name=interaction.interaction_id)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _handle(self, interaction: agent_service_pb2.Interaction) -> None:
        name = interaction.details.interaction_type
        kind = self.types.get(name)
        seconds = kind.handle.sample(self.rng) * self.group.handle_factor if kind else 1.0
        started = time.monotonic()
        await asyncio.sleep(seconds)
        resolved = True
        if self.scenario is not None:
            rate = self.scenario.resolve_rate(name, self.group.name, time.time() - self.started)
            # Drawn for the customer (the same in every run of the scenario), not the agent.
            customer = streams(self.scenario.run.seed, "outcome", interaction.details.customer_id)
            resolved = customer.random() < rate
        request = agent_service_pb2.CompleteInteractionRequest(
            agent_id=self.agent_id,
            interaction_id=interaction.interaction_id,
            outcome=handoff_pb2.OUTCOME_RESOLVED if resolved else handoff_pb2.OUTCOME_UNRESOLVED,
            disposition_code="sim/resolved" if resolved else "sim/unresolved",
        )
        for _ in range(20):
            try:
                await self.stub.CompleteInteraction(request, timeout=CALL_TIMEOUT)
                now = time.time()
                self.seen.outcomes.append(OutcomeRecord(name, resolved, now))
                if self.customers is not None:
                    self.customers.completed(interaction.details, self.group.name, resolved, now)
                break
            except grpc.aio.AioRpcError as error:
                self.seen.errors[f"complete {error.code().name}"] += 1
                if error.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    break
                await asyncio.sleep(self.rng.uniform(*RETRY_DELAY))
        self.busy_slot_seconds += time.monotonic() - started

    def _start_leaving(self) -> None:
        self._leaving = True
        task = asyncio.ensure_future(self._leave())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _leave(self) -> None:
        """The agent's time is up: no new offers, then log out once the work is done."""
        away = agent_service_pb2.ConnectRequest.SetStatus(status=agent_pb2.AGENT_STATUS_AWAY)
        self._send(agent_service_pb2.ConnectRequest(set_status=away))
        while self._work:
            await asyncio.gather(*list(self._work), return_exceptions=True)
        if self._outbox is not None:
            self._outbox.close()


@dataclass
class Customers:
    """The customers of the interactions completed in this process, after their completion:
    each rates it (or not) through its bot, as the scenario says and its own random stream
    draws (`Scenario.rating`), a few moments later."""

    scenario: Scenario
    stub: handoff_service_pb2_grpc.HandoffServiceStub
    seen: Observations
    started: float  # epoch seconds of the run's first possible arrival
    jitter: random.Random = field(default_factory=random.Random)  # retries' only
    _pending: dict[asyncio.Task[None], float] = field(default_factory=dict)  # -> due, monotonic

    def completed(
        self, details: agent_service_pb2.InteractionDetails, group: str, resolved: bool, at: float
    ) -> None:
        """An agent of `group` completed the interaction at `at` (epoch s), resolved or not."""
        kind = details.interaction_type
        if not any(t.name == kind for t in self.scenario.types):
            return  # not one of the scenario's: no customer of ours
        customer = streams(self.scenario.run.seed, "rating", details.customer_id)
        rating = self.scenario.rating(customer, kind, group, at - self.started, resolved)
        if rating is None:
            return
        task = asyncio.ensure_future(self._rate(details, resolved, at, rating))
        self._pending[task] = time.monotonic() + rating.delay
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._pending.pop(task, None)

    async def _rate(
        self,
        details: agent_service_pb2.InteractionDetails,
        resolved: bool,
        completed: float,
        rating: Rating,
    ) -> None:
        await asyncio.sleep(rating.delay)
        request = handoff_service_pb2.RecordFeedbackRequest(
            handoff_id=details.handoff_id,
            csat=rating.csat,
            reason_tags=["resolved" if resolved else "unresolved"],
            contacted_again=rating.contacted_again,
        )
        for attempt in range(FEEDBACK_ATTEMPTS):
            try:
                await self.stub.RecordFeedback(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                self.seen.errors[f"feedback {error.code().name}"] += 1
                if error.code() not in RETRYABLE or attempt + 1 == FEEDBACK_ATTEMPTS:
                    return
                await asyncio.sleep(FEEDBACK_BACKOFF * 2**attempt * self.jitter.uniform(0.5, 1.5))
                continue
            self.seen.ratings.append(
                RatingRecord(
                    details.interaction_type,
                    urgency_name(details.urgency),
                    resolved,
                    rating.csat,
                    rating.contacted_again,
                    completed,
                    time.time(),
                )
            )
            return

    async def finish(self, until: float, grace: float = 15.0) -> None:
        """The run is over: sends the ratings due by `until` (monotonic time) and drops the
        others, and those still trying `grace` seconds after `until`."""
        for task, due in list(self._pending.items()):
            if due > until:
                task.cancel()
        if self._pending:
            await asyncio.wait(
                list(self._pending), timeout=max(0.0, until - time.monotonic()) + grace
            )
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)


def _loop_time(monotonic: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic - time.monotonic())


@dataclass
class Bots:
    """The upstream bots of a scenario: requests, the customers' patience, the final records."""

    scenario: Scenario
    stub: handoff_service_pb2_grpc.HandoffServiceStub
    rng: random.Random
    seen: Observations
    requested: int = 0
    _sent: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (type, urgency)
    _abandoned: set[str] = field(default_factory=set)
    _estimated: dict[str, float] = field(default_factory=dict)  # id -> estimated wait, s
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, until: float) -> None:
        """Sends handoffs until `until` (monotonic time)."""
        await asyncio.gather(*(self._arrivals(kind, until) for kind in self.scenario.types))

    async def _arrivals(self, kind: InteractionType, until: float) -> None:
        rate = kind.per_minute / 60
        urgencies, weights = zip(*kind.urgency.items(), strict=True)
        rng = streams(self.scenario.run.seed, "arrivals", kind.name)
        at = time.monotonic()
        while True:
            at += rng.expovariate(rate)  # on the schedule, however late the loop wakes
            if at >= until:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            # Everything about the customer drawn here, in arrival order: the same customers
            # in every run of the scenario, however the server answers.
            urgency = rng.choices(urgencies, weights)[0]
            customer = rng.randrange(10**6)
            patience = None if kind.patience is None else kind.patience.sample(rng)
            self._spawn(self._request(kind, urgency, customer, patience))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(
        self, kind: InteractionType, urgency: str, customer: int, patience: float | None
    ) -> None:
        number = self.requested
        self.requested += 1
        request = handoff_service_pb2.RequestHandoffRequest(
            request_id=str(uuid.uuid4()),
            conversation_id=f"sim-conversation-{number}",
            customer_id=f"sim-customer-{customer}",
            interaction_type=kind.name,
            required_skills=[
                handoff_pb2.SkillRequirement(skill=skill, min_proficiency=level)
                for skill, level in sorted(kind.skills.items())
            ],
            language=kind.language,
            urgency=f"URGENCY_{urgency}",
            summary="simulated customer",
            reason=f"HANDOFF_REASON_{kind.reason}",
        )
        handoff = await self._call(self.stub.RequestHandoff, request, "request")
        if handoff is None:
            return
        handoff_id = handoff.handoff.handoff_id
        self._sent[handoff_id] = (kind.name, urgency)
        if handoff.handoff.HasField("estimated_wait"):
            self._estimated[handoff_id] = (
                handoff.handoff.estimated_wait.ToTimedelta().total_seconds()
            )
        if patience is not None:
            await asyncio.sleep(patience)
            cancel = handoff_service_pb2.CancelHandoffRequest(handoff_id=handoff_id)
            try:
                await self.stub.CancelHandoff(cancel, timeout=CALL_TIMEOUT)
                self._abandoned.add(handoff_id)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:  # answered already
                    self.seen.errors[f"cancel {error.code().name}"] += 1

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Message, what: str
    ) -> T | None:
        for _ in range(20):
            try:
                return await method(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                self.seen.errors[f"{what} {error.code().name}"] += 1
                if error.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    # Over the caller's rate limit (the end-of-run look at every handoff):
                    # a well-behaved client waits and tries again.
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ):
                    return None
                await asyncio.sleep(self.rng.uniform(*RETRY_DELAY))
        return None

    async def finish(self, until: float) -> None:
        """Waits until every handoff sent has ended (answered and completed, or abandoned)
        or `until` (monotonic time), then records each as the server has it."""
        final: dict[str, handoff_pb2.Handoff] = {}
        limit = asyncio.Semaphore(50)

        async def look(handoff_id: str) -> None:
            async with limit:
                got = await self._call(
                    self.stub.GetHandoff,
                    handoff_service_pb2.GetHandoffRequest(handoff_id=handoff_id),
                    "get",
                )
            if got is not None:
                final[handoff_id] = got.handoff

        while True:
            await asyncio.gather(*(look(h) for h in self._sent if h not in final))
            ended = [h for h in final.values() if h.state in FINISHED]
            if len(ended) == len(self._sent) or time.monotonic() >= until:
                break
            for handoff_id in [h.handoff_id for h in final.values() if h.state not in FINISHED]:
                del final[handoff_id]
            await asyncio.sleep(min(1.0, max(0.0, until - time.monotonic())))
        for task in list(self._tasks):
            task.cancel()  # customers still waiting at the end
        for handoff_id, (kind, urgency) in self._sent.items():
            h = final.get(handoff_id)
            if h is None:
                continue
            self.seen.handoffs.append(
                HandoffRecord(
                    handoff_id=handoff_id,
                    interaction_type=kind,
                    urgency=urgency,
                    state=handoff_pb2.HandoffState.Name(h.state).removeprefix("HANDOFF_STATE_"),
                    created=_seconds(h.create_time),
                    assigned=_seconds(h.assign_time) if h.HasField("assign_time") else None,
                    target=_seconds(h.target_time) if h.HasField("target_time") else None,
                    abandoned=handoff_id in self._abandoned,
                    estimated=self._estimated.get(handoff_id),
                    expired=h.state == handoff_pb2.HANDOFF_STATE_EXPIRED,
                )
            )


@dataclass(frozen=True, slots=True)
class _Offered:
    """An offer an agent was shown: its type and urgency, its handoff and when it was made."""

    key: tuple[str, str]
    handoff_id: str
    at: float  # epoch seconds


def _seconds(stamp: Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9
