"""`AgentClient`: a gig agent's session, for the agent's app.

    async with AgentClient("alice", token=alice_token) as agent:  # logs in
        async for offer in agent.offers():
            interaction = await agent.accept(offer)
            ...  # talk to the customer
            await agent.complete(interaction, outcome="resolved", disposition_code="refund")
    # leaving the block logs out

The client keeps one Connect stream open and keeps it alive: it heartbeats at a third of
the interval the server asks for, and when the stream breaks (a lost network, a server
restarting or draining) it opens a new one and resumes the session with the welcome's
resume token, so the agent keeps its accepted work. It reconnects at once when the server
says `drain`, otherwise after an exponential backoff with full jitter (`Backoff`), so a crowd
cut off together does not come back as one wave. When the session cannot be resumed any
more (the grace period ran out) it logs in afresh; work accepted before then has gone back to
the queue, and `interactions` says so. It gives up, failing `offers()` with an `ApiError`,
only on what retrying cannot fix: an unknown agent, a bad token, or another connection of the
same agent taking the session over (ABORTED, SESSION_REPLACED). A log-in racing another
(ABORTED, CONCURRENT_LOGIN) is retried.

Commands (`accept`, `decline`, `set_status`) are sent on the stream with a command id and
wait for the server's answer to that id; a refusal raises `CommandRejected` with the server's
reason (OFFER_EXPIRED, ...). A command sent while the client is reconnecting waits for the
new stream; with no answer within the client's timeout it raises DEADLINE_EXCEEDED. An
accept whose answer the broken stream never delivered is settled by the next welcome, which
lists the interactions the agent holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import grpc

from humanline.client.connection import DEFAULT_TIMEOUT, Backoff, Client, Token, enum_value
from humanline.client.errors import ApiError, CommandRejected, SessionInterrupted, status_code
from humanline.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, handoff_pb2

Offer = agent_service_pb2.Offer
Interaction = agent_service_pb2.Interaction
ConnectRequest = agent_service_pb2.ConnectRequest
ConnectResponse = agent_service_pb2.ConnectResponse
Welcome = ConnectResponse.Welcome

StatusName = Literal["available", "away"]
DeclineName = Literal["busy", "not_qualified", "language", "ending_shift", "other"]
OutcomeName = Literal["resolved", "unresolved", "transferred", "follow_up_needed"]

log = logging.getLogger("humanline.client")

# What a new stream may cure. NOT_FOUND, UNAUTHENTICATED, PERMISSION_DENIED,
# INVALID_ARGUMENT and a take-over (ABORTED, SESSION_REPLACED) end the client instead.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # a lost connection, a server stopping or draining
        grpc.StatusCode.DEADLINE_EXCEEDED,  # heartbeats missed (a stalled network)
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # too many streams or calls for now
        grpc.StatusCode.ABORTED,  # a log-in or resume racing another (CONCURRENT_LOGIN, ...)
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,  # cancelled by a proxy
    }
)
TAKEN_OVER = "SESSION_REPLACED"  # a newer connection of the agent has the session: stay out
SEEN_OFFERS = 1000  # offer ids remembered so an offer shown again is not handed out twice


class Outbox:
    """The request side of a Connect stream: commands until `close()` (the log-out). A plain
    async iterator, not an async generator: grpc may still be waiting in it when the call is
    cancelled, and an async generator would then complain when finalized."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[ConnectRequest | None] = asyncio.Queue()

    def put(self, request: ConnectRequest) -> None:
        self._queue.put_nowait(request)

    def close(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> Outbox:
        return self

    async def __anext__(self) -> ConnectRequest:
        request = await self._queue.get()
        if request is None:
            self._queue.put_nowait(None)  # stays closed
            raise StopAsyncIteration
        return request


@dataclass
class _Pending:
    """A command waiting for its answer; an accept also names its offer."""

    future: asyncio.Future[ConnectResponse]
    offer_id: str = ""


@dataclass(frozen=True)
class _End:
    """The end of `offers()` and `events()`: logged out (no error) or given up."""

    error: ApiError | None = None


class AgentClient(Client):
    """One agent's session on AgentService.Connect (a token with the agent role, for this
    agent). `status` is the status to log in with; `backoff` paces reconnections; the
    other arguments are `Client`'s (`wait_for_ready` is not: the session reconnects by
    itself)."""

    def __init__(
        self,
        agent_id: str,
        target: str | None = None,
        *,
        status: StatusName = "available",
        backoff: Backoff | None = None,
        token: Token = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
        options: Iterable[tuple[str, Any]] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            target,
            token=token,
            credentials=credentials,
            channel=channel,
            options=options,
            timeout=timeout,
        )
        self.agent_id = agent_id
        self.backoff = backoff or Backoff()
        self.welcome: Welcome | None = None  # the latest welcome
        self.interactions: dict[str, Interaction] = {}  # accepted, not yet completed
        self.pending_offers: dict[str, Offer] = {}  # offered and still open
        self.reconnects = 0  # streams opened after the first
        self.sessions_lost = 0  # times the session could not be resumed
        self._status = enum_value(agent_pb2.AgentStatus, "AGENT_STATUS_", status)
        self._resume_token = ""
        self._outbox: Outbox | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._failure: ApiError | None = None  # what the client gave up on
        self._ended = False
        self._last_error: ApiError | None = None
        self._moving = False  # the server said `drain`
        self._welcomed = False  # the current stream got its welcome
        self._commands: dict[str, _Pending] = {}
        self._offers: asyncio.Queue[Offer | _End] = asyncio.Queue()
        self._listeners: list[asyncio.Queue[ConnectResponse | _End]] = []
        self._seen: OrderedDict[str, None] = OrderedDict()

    @cached_property
    def _stub(self) -> agent_service_pb2_grpc.AgentServiceStub:
        return agent_service_pb2_grpc.AgentServiceStub(self.channel)

    # The session

    @property
    def connected(self) -> bool:
        """True while a stream is open and welcomed."""
        return self._connected.is_set()

    @property
    def status(self) -> StatusName:
        """The agent's own status: "available" or "away"."""
        return "away" if self._status == agent_pb2.AGENT_STATUS_AWAY else "available"

    @property
    def session_id(self) -> str:
        """The session's id (the same across resumes)."""
        return self.welcome.session_id if self.welcome is not None else ""

    async def connect(self) -> Welcome:
        """Logs in, retrying while the server cannot be reached, for up to the client's
        `timeout`; returns the welcome. Raises ApiError (and closes the client) when the
        server refuses the agent or cannot be reached in time."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"agent {self.agent_id}")
        connected = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait(
                {connected, self._runner},
                timeout=self.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            connected.cancel()
        # Welcomed is logged in, even if the stream broke just after: that is reconnecting.
        if self.welcome is None or self._failure is not None:
            failure = self._failure
            if failure is None:
                last = f": {self._last_error}" if self._last_error else ""
                failure = ApiError(
                    grpc.StatusCode.UNAVAILABLE, f"could not log in to {self.target}{last}"
                )
            await self.close()  # the channel too: `async with` does not exit what never entered
            raise failure
        return self.welcome

    async def close(self) -> None:
        """Logs out: closes the request side of the stream and waits (up to `timeout`) for
        the server to end it. Without accepted work the agent goes offline at once; with
        some, the session's grace period starts, as on a drop, so complete first. Then
        closes the channel (unless it was the caller's)."""
        self._stopping.set()
        if self._outbox is not None:
            self._outbox.close()
        if self._runner is not None:
            if self._outbox is not None:  # a log-out the server answers by ending the stream
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._runner), self.timeout)
            if not self._runner.done():
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
        self._end(None)
        await super().close()

    async def __aenter__(self) -> AgentClient:
        await self.connect()
        return self

    # What the server says

    async def offers(self) -> AsyncIterator[Offer]:
        """Each new offer, while it is still open; ends at log-out. Raises the ApiError the
        client gave up on. Offers not accepted in time are taken back (see `events()`). For
        one reader: two would share the offers between them (`events()` gives each reader
        everything)."""
        while True:
            item = await self._offers.get()
            if isinstance(item, _End):
                self._offers.put_nowait(item)  # every reader sees the end
                if item.error is not None:
                    raise item.error
                return
            if item.offer_id in self.pending_offers:
                yield item

    async def events(self) -> AsyncIterator[ConnectResponse]:
        """Every message the server sends from now on (welcomes after reconnects, offers,
        rescinds, status changes, heartbeats, drains); ends at log-out. Raises the ApiError
        the client gave up on."""
        queue: asyncio.Queue[ConnectResponse | _End] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            while not isinstance(item := await queue.get(), _End):
                yield item
            if item.error is not None:
                raise item.error
        finally:
            self._listeners.remove(queue)

    # Commands

    async def accept(self, offer: Offer | str) -> Interaction:
        """Accepts an offer; returns the interaction, now the agent's. Raises
        CommandRejected when the offer is gone (OFFER_EXPIRED, OFFER_RESCINDED, ...)."""
        offer_id = offer if isinstance(offer, str) else offer.offer_id
        request = ConnectRequest(accept_offer=ConnectRequest.AcceptOffer(offer_id=offer_id))
        answer = await self._command(request, offer_id=offer_id)
        return answer.assignment_confirmed.interaction

    async def decline(self, offer: Offer | str, reason: DeclineName | int = "other") -> None:
        """Declines an offer; it goes to the next agent and is not offered here again."""
        decline = ConnectRequest.DeclineOffer(
            offer_id=offer if isinstance(offer, str) else offer.offer_id,
            reason=enum_value(agent_service_pb2.DeclineReason, "DECLINE_REASON_", reason),  # type: ignore[arg-type]
        )
        await self._command(ConnectRequest(decline_offer=decline))

    async def set_status(self, status: StatusName | int) -> None:
        """Available for offers, or away (pending offers are taken back)."""
        value = enum_value(agent_pb2.AgentStatus, "AGENT_STATUS_", status)
        request = ConnectRequest(set_status=ConnectRequest.SetStatus(status=value))  # type: ignore[arg-type]
        await self._command(request)
        self._status = value

    async def complete(
        self,
        interaction: Interaction | str,
        *,
        outcome: OutcomeName | int = "resolved",
        disposition_code: str = "",
        notes: str = "",
    ) -> Interaction:
        """Ends an accepted interaction with its outcome; returns it with its handle time.
        Safe to repeat (completing again with the same content returns the same result),
        and works while the stream is reconnecting: it is a call of its own."""
        interaction_id = interaction if isinstance(interaction, str) else interaction.interaction_id
        request = agent_service_pb2.CompleteInteractionRequest(
            agent_id=self.agent_id,
            interaction_id=interaction_id,
            outcome=enum_value(handoff_pb2.Outcome, "OUTCOME_", outcome),  # type: ignore[arg-type]
            disposition_code=disposition_code,
            notes=notes,
        )
        response: agent_service_pb2.CompleteInteractionResponse = await self._unary(
            self._stub.CompleteInteraction, request
        )
        self.interactions.pop(interaction_id, None)
        return response.interaction

    async def _command(self, request: ConnectRequest, offer_id: str = "") -> ConnectResponse:
        """Sends a command once a stream is open and waits for the server's answer to it;
        DEADLINE_EXCEEDED when neither comes within the client's timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._send(request, offer_id)
        except TimeoutError:
            raise ApiError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no answer from the server within {self.timeout:g} s",
            ) from None
        if answer.WhichOneof("event") == "command_rejected":
            rejected = answer.command_rejected
            raise CommandRejected(
                status_code(rejected.code),
                rejected.message,
                reason=rejected.reason,
                metadata=dict(rejected.metadata),
            )
        return answer

    async def _send(self, request: ConnectRequest, offer_id: str) -> ConnectResponse:
        """Waits for an open stream, sends the command on it, and waits for its answer."""
        while self._outbox is None or not self._connected.is_set():
            if self._failure is not None:
                raise self._failure
            if self._stopping.is_set():
                raise SessionInterrupted("the agent has logged out")
            await self._wait_connected()
        command_id = request.command_id = uuid.uuid4().hex
        future: asyncio.Future[ConnectResponse] = asyncio.get_running_loop().create_future()
        self._commands[command_id] = _Pending(future, offer_id)
        try:
            self._outbox.put(request)
            return await future
        finally:
            self._commands.pop(command_id, None)

    async def _wait_connected(self) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._connected.wait())]
        if self._runner is not None:
            waits.append(asyncio.shield(self._runner))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    # The stream, kept open

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self._moving = self._welcomed = False
            try:
                await self._session_stream()
                if self._stopping.is_set():
                    return  # logged out
                failure = ApiError(grpc.StatusCode.UNAVAILABLE, "the server ended the stream")
            except grpc.aio.AioRpcError as error:
                failure = ApiError.from_rpc_error(error)
            finally:
                self._interrupted()
            self._last_error = failure
            if self._stopping.is_set():
                return
            if failure.code == grpc.StatusCode.FAILED_PRECONDITION and self._resume_token:
                self._session_lost(failure)
                continue  # log in afresh, at once
            if failure.code not in RETRYABLE or failure.reason == TAKEN_OVER:
                log.warning("agent %s: giving up: %s", self.agent_id, failure)
                self._end(failure)
                return
            if self._welcomed:
                attempt = 0
            self.reconnects += 1
            if self._moving:
                log.info("agent %s: the server is draining; moving", self.agent_id)
                continue
            delay = self.backoff.delay(attempt)
            attempt += 1
            log.info("agent %s: %s; reconnecting in %.2f s", self.agent_id, failure, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session_stream(self) -> None:
        outbox = Outbox()
        first = ConnectRequest()
        if self._resume_token:
            first.resume.agent_id = self.agent_id
            first.resume.resume_token = self._resume_token
        else:
            first.hello.agent_id = self.agent_id
            first.hello.initial_status = self._status  # type: ignore[assignment]
        outbox.put(first)
        call = self._stub.Connect(outbox, metadata=self.metadata())
        beats: asyncio.Task[None] | None = None
        try:
            async for message in call:
                if message.WhichOneof("event") == "welcome":
                    self._outbox = outbox
                    if self._stopping.is_set():
                        outbox.close()  # close() came while this stream opened
                    interval = message.welcome.heartbeat_interval.ToTimedelta().total_seconds()
                    if beats is None:
                        beats = asyncio.create_task(self._heartbeats(outbox, interval / 3))
                self._receive(message)
        finally:
            self._outbox = None
            if beats is not None:
                beats.cancel()
            outbox.close()
            if not self._stopping.is_set():
                call.cancel()

    async def _heartbeats(self, outbox: Outbox, every: float) -> None:
        while True:
            await asyncio.sleep(max(every, 0.05))
            outbox.put(ConnectRequest(heartbeat=ConnectRequest.Heartbeat()))

    def _receive(self, message: ConnectResponse) -> None:
        kind = message.WhichOneof("event")
        if kind == "welcome":
            self._welcomed_with(message.welcome)
        elif kind == "offer":
            offer = message.offer
            if offer.offer_id not in self._seen:
                self._seen[offer.offer_id] = None
                if len(self._seen) > SEEN_OFFERS:
                    self._seen.popitem(last=False)
                self.pending_offers[offer.offer_id] = offer
                self._offers.put_nowait(offer)
        elif kind == "offer_rescinded":
            self.pending_offers.pop(message.offer_rescinded.offer_id, None)
        elif kind == "assignment_confirmed":
            interaction = message.assignment_confirmed.interaction
            self.pending_offers.pop(interaction.interaction_id, None)
            self.interactions[interaction.interaction_id] = interaction
        elif kind == "status_changed":
            self._status = message.status_changed.status
        elif kind == "drain":
            self._moving = True
        pending = self._commands.get(message.command_id) if message.command_id else None
        if pending is not None and not pending.future.done():
            pending.future.set_result(message)
        for listener in self._listeners:
            listener.put_nowait(message)

    def _welcomed_with(self, welcome: Welcome) -> None:
        self.welcome = welcome
        self._welcomed = True
        self._resume_token = welcome.resume_token
        self.interactions = {i.interaction_id: i for i in welcome.active_interactions}
        self.pending_offers.clear()
        away = welcome.agent.state == agent_pb2.AGENT_STATE_AWAY
        self._status = agent_pb2.AGENT_STATUS_AWAY if away else agent_pb2.AGENT_STATUS_AVAILABLE
        # Accepts the broken stream never answered: held now means they took effect.
        for pending in list(self._commands.values()):
            if pending.offer_id and not pending.future.done():
                held = self.interactions.get(pending.offer_id)
                if held is not None:
                    confirmed = ConnectResponse.AssignmentConfirmed(interaction=held)
                    pending.future.set_result(ConnectResponse(assignment_confirmed=confirmed))
                else:
                    pending.future.set_exception(
                        SessionInterrupted("the stream broke before the offer was accepted")
                    )
        self._connected.set()

    def _interrupted(self) -> None:
        """The stream ended: offers on it are gone; commands other than accepts fail (an
        accept waits for the next welcome to say whether it took effect)."""
        self._connected.clear()
        self.pending_offers.clear()
        for pending in self._commands.values():
            if not pending.offer_id and not pending.future.done():
                pending.future.set_exception(
                    SessionInterrupted("the stream broke before the server answered")
                )

    def _session_lost(self, failure: ApiError) -> None:
        """The session could not be resumed: log in afresh; held work went back to the
        queue, and accepts waiting for a welcome did not take effect."""
        log.warning(
            "agent %s: session lost (%s); %d interaction(s) went back to the queue",
            self.agent_id,
            failure,
            len(self.interactions),
        )
        self.sessions_lost += 1
        self._resume_token = ""
        self.interactions.clear()
        for pending in self._commands.values():
            if not pending.future.done():
                pending.future.set_exception(SessionInterrupted(f"session lost: {failure}"))

    def _end(self, error: ApiError | None) -> None:
        """No more streams: end the readers, fail what still waits."""
        if self._ended:
            return
        self._ended, self._failure = True, error
        self._stopping.set()
        self._connected.clear()
        self._offers.put_nowait(_End(error))
        for listener in self._listeners:
            listener.put_nowait(_End(error))
        for pending in self._commands.values():
            if not pending.future.done():
                pending.future.set_exception(error or SessionInterrupted("logged out"))
