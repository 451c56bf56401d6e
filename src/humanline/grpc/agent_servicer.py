"""AgentService: the agent app's session stream and interaction completion.

The Connect handler owns one stream: it logs the agent in (hello or resume), then runs a
reader task for the agent's commands and a watchdog for its heartbeats, while it writes the
session's events to the stream. Whatever ends the stream (the client leaving, a newer
connection, missed heartbeats, shutdown, a network drop that cancels the handler), the
`finally` records the drop through the service, in a task of its own; cancellation is never
swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
import structlog

from humanline.domain.access import Principal, Role, require_agent
from humanline.domain.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from humanline.domain.model import AgentStatus
from humanline.grpc import converters
from humanline.grpc.auth import Gate
from humanline.grpc.errors import (
    DRAINING,
    SHUTTING_DOWN,
    STORE_UNAVAILABLE,
    StreamDeadline,
    abort,
    authorize,
    call_boundary,
    unary,
)
from humanline.grpc.wire import MALFORMED_ERROR, is_malformed
from humanline.service.agents import Connection
from humanline.service.app import Humanline
from humanline.service.events import (
    CLOSE_CLIENT,
    CLOSE_DETACHED,
    CLOSE_DRAINING,
    CLOSE_HEARTBEAT,
    CLOSE_LOST,
    CLOSE_REPLACED,
    AgentEvent,
    CommandFailed,
    HeartbeatAck,
    Reconcile,
    StreamClosing,
)
from humanline.store.port import StoreError
from humanline.v1 import agent_service_pb2, agent_service_pb2_grpc

log = structlog.get_logger("humanline.grpc")

ConnectRequest = agent_service_pb2.ConnectRequest
ConnectResponse = agent_service_pb2.ConnectResponse
Context = grpc.aio.ServicerContext[Any, Any]

CLOSE_ERRORS: dict[str, DomainError] = {
    CLOSE_REPLACED: Aborted(
        "a newer connection of this agent took the session over", reason="SESSION_REPLACED"
    ),
    CLOSE_HEARTBEAT: StreamDeadline("no heartbeat within the heartbeat timeout"),
    CLOSE_LOST: Unavailable("the stream broke; reconnect and resume", reason="STREAM_LOST"),
    CLOSE_DETACHED: Unavailable(
        "this server lost the session (it was presumed dead); reconnect and resume",
        reason="SESSION_DETACHED",
    ),
    CLOSE_DRAINING: DRAINING,
}


MAX_RESUME_TOKEN = 256  # the server's are 43 characters
# How long a stream whose requests ended waits for grpc to cancel it (a drop) before the end
# counts as the app's log-out (seen in CI: under load, the cancellation came after the
# session had already logged a dropped agent out).
LOGOUT_SETTLE = 0.2


class AgentServicer(agent_service_pb2_grpc.AgentServiceServicer):
    """AgentService on the dispatch service."""

    def __init__(self, app: Humanline, gate: Gate, *, hello_timeout: float = 10.0) -> None:
        self._app = app
        self.gate = gate
        self._hello_timeout = hello_timeout

    async def Connect(
        self, request_iterator: AsyncIterator[ConnectRequest], context: Context
    ) -> AsyncIterator[ConnectResponse]:
        async with call_boundary(self, "Connect", context, timed=False):
            principal = authorize(self, context, (Role.AGENT,))
            if self._app.draining:  # its agents are moving away: do not take new ones
                raise DRAINING
            peer = self.gate.streams.acquire(context.peer())
            try:
                # Closed with this generator, whichever way grpc ends the call.
                async with contextlib.aclosing(
                    self._session(request_iterator, context, principal)
                ) as session:
                    async for message in session:
                        yield message
            finally:
                self.gate.streams.release(peer)

    async def _session(
        self,
        request_iterator: AsyncIterator[ConnectRequest],
        context: Context,
        principal: Principal,
    ) -> AsyncGenerator[ConnectResponse, None]:
        """The stream from its first message (hello or resume) to its end."""
        requests = aiter(request_iterator)
        try:
            async with asyncio.timeout(self._hello_timeout):
                first = await anext(requests)
        except StopAsyncIteration:
            return
        except TimeoutError:
            await abort(context, StreamDeadline("no hello or resume in time", reason="NO_HELLO"))
        try:
            conn = await self._open(first, principal)
        except DomainError as error:
            await abort(context, error)
        except StoreError:
            await abort(context, STORE_UNAVAILABLE)

        channel = conn.channel
        policy = self._app.sessions.policy
        yield converters.welcome(
            conn,
            policy.heartbeat_interval,
            policy.grace_period,
            converters.command_id(first.command_id),
        )
        last_seen = [time.monotonic()]
        reader = asyncio.create_task(
            self._read(requests, conn, last_seen, principal, context), name="agent-reader"
        )
        watchdog = asyncio.create_task(
            self._watch_heartbeats(conn, last_seen, policy.heartbeat_timeout.total_seconds()),
            name="agent-watchdog",
        )
        clean = False
        try:
            while True:
                events: list[AgentEvent] = [await channel.get()]
                if isinstance(events[0], Reconcile):
                    events = await self._reconcile(conn)
                for event in events:
                    if isinstance(event, StreamClosing):
                        if event.why == CLOSE_CLIENT:
                            clean = True
                            return
                        await abort(context, CLOSE_ERRORS.get(event.why, SHUTTING_DOWN))
                    if channel.admit(event):
                        message = converters.connect_response(event)
                        if message is not None:
                            yield message
        finally:
            reader.cancel()
            watchdog.cancel()
            self._app.sessions.dropped(channel, clean=clean)

    async def _reconcile(self, conn: Connection) -> list[AgentEvent]:
        """What changed elsewhere, from the store; a store hiccup is retried on the next hint
        or poll."""
        try:
            return await self._app.sessions.reconcile(conn.channel)
        except StoreError as exc:
            log.warning("agent_reconcile_failed", agent_id=conn.channel.agent_id, error=str(exc))
            return []

    async def _open(self, first: ConnectRequest, principal: Principal) -> Connection:
        """The session the first message opens or resumes, for the token's own agent."""
        sessions = self._app.sessions
        if is_malformed(first):
            raise MALFORMED_ERROR
        match first.WhichOneof("command"):
            case "hello":
                agent_id = converters.agent_id("hello.agent_id", first.hello.agent_id)
                require_agent(principal, agent_id)
                status = converters.agent_status(
                    "hello.initial_status",
                    first.hello.initial_status,
                    default=AgentStatus.AVAILABLE,
                )
                return await sessions.connect(agent_id, status)
            case "resume":
                agent_id = converters.agent_id("resume.agent_id", first.resume.agent_id)
                require_agent(principal, agent_id)
                token = first.resume.resume_token
                if not token or len(token) > MAX_RESUME_TOKEN:
                    raise InvalidArgument(
                        [FieldViolation("resume.resume_token", "must be a welcome's resume_token")]
                    )
                return await sessions.resume(agent_id, first.resume.resume_token)
            case _:
                raise InvalidArgument(
                    [FieldViolation("command", "the first message must be hello or resume")]
                )

    async def _read(
        self,
        requests: AsyncIterator[ConnectRequest],
        conn: Connection,
        last_seen: list[float],
        principal: Principal,
        context: Context,
    ) -> None:
        """Runs the agent's commands in order; a failed command is answered, never fatal."""
        channel = conn.channel
        try:
            async for request in requests:
                last_seen[0] = time.monotonic()
                await self._command(request, conn, principal, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transport broke: a drop, not a log-out
            log.info("agent_stream_lost", agent_id=channel.agent_id, error=type(exc).__name__)
            channel.close(CLOSE_LOST)
            return
        # The requests end the same way when the app closes its side (a log-out) and when the
        # call is cancelled (a drop: a broken connection, an app killed): grpc cancels this
        # handler only just after. Wait a moment for that before taking it for a log-out;
        # a cancellation meanwhile ends the stream as a drop.
        await asyncio.sleep(LOGOUT_SETTLE)
        channel.close(CLOSE_CLIENT)  # the app closed its side: a log-out

    async def _watch_heartbeats(
        self, conn: Connection, last_seen: list[float], silence_limit: float
    ) -> None:
        """Ends the stream when the app has been silent for the heartbeat timeout."""
        while True:
            silent = time.monotonic() - last_seen[0]
            if silent >= silence_limit:
                log.info("agent_heartbeat_missed", agent_id=conn.channel.agent_id)
                conn.channel.close(CLOSE_HEARTBEAT)
                return
            await asyncio.sleep(silence_limit - silent)

    async def _command(
        self, request: ConnectRequest, conn: Connection, principal: Principal, context: Context
    ) -> None:
        channel, sessions = conn.channel, self._app.sessions
        if is_malformed(request):  # refused; the stream goes on
            channel.put(CommandFailed(MALFORMED_ERROR, ""))
            return
        command_id = converters.command_id(request.command_id)
        try:
            self.gate.limit(principal, context)  # a command counts as a call
            match request.WhichOneof("command"):
                case "heartbeat":
                    channel.put(HeartbeatAck(self._app.clock.now(), command_id))
                case "set_status":
                    status = converters.agent_status(
                        "set_status.status", request.set_status.status, default=None
                    )
                    await sessions.set_status(channel.agent_id, status, command_id)
                case "accept_offer":
                    offer_id = converters.uuid_id(
                        "accept_offer.offer_id", request.accept_offer.offer_id
                    )
                    await sessions.accept(channel.agent_id, offer_id, command_id)
                case "decline_offer":
                    offer_id = converters.uuid_id(
                        "decline_offer.offer_id", request.decline_offer.offer_id
                    )
                    reason = converters.decline_reason(request.decline_offer.reason)
                    await sessions.decline(channel.agent_id, offer_id, reason, command_id)
                case "hello" | "resume":
                    raise FailedPrecondition(
                        "this stream's session is already open", reason="SESSION_ALREADY_OPEN"
                    )
                case _:
                    raise InvalidArgument([FieldViolation("command", "required")])
        except DomainError as error:
            channel.put(CommandFailed(error, command_id))
        except StoreError:
            channel.put(CommandFailed(STORE_UNAVAILABLE, command_id))

    @unary(Role.AGENT)
    async def CompleteInteraction(
        self,
        request: agent_service_pb2.CompleteInteractionRequest,
        context: Context,
        caller: Principal,
    ) -> agent_service_pb2.CompleteInteractionResponse:
        completion = converters.completion(request)
        require_agent(caller, request.agent_id)
        interaction = await self._app.sessions.complete(
            request.agent_id,
            converters.uuid_id("interaction_id", request.interaction_id),
            completion,
        )
        return agent_service_pb2.CompleteInteractionResponse(
            interaction=converters.interaction_pb(interaction)
        )
