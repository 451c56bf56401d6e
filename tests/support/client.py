"""Test clients over real gRPC: stubs for all services and an agent-app driver.

`AgentDriver` plays an agent app on AgentService.Connect: it sends commands, reads what the
server says, can heartbeat in the background, and can leave cleanly (half-close) or drop
(cancel the call, as a lost network does).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from humanline.client import credentials
from humanline.client.credentials import Minter
from humanline.tokens import KeyRing
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

ConnectRequest = agent_service_pb2.ConnectRequest
ConnectResponse = agent_service_pb2.ConnectResponse
TEST_BOT = "test-bot"  # the bot the stubs' handoff calls are made as


@dataclass
class Stubs:
    """One channel's stubs for every humanline service. With a `minter`, every call carries
    the token of the caller that makes it (ops for PoolService, the bot `test-bot` for
    HandoffService, the agent it names for an agent's calls)."""

    channel: grpc.aio.Channel
    agents: agent_service_pb2_grpc.AgentServiceStub
    handoffs: handoff_service_pb2_grpc.HandoffServiceStub
    pool: pool_service_pb2_grpc.PoolServiceStub
    minter: Minter | None = None

    @classmethod
    def connect(
        cls,
        target: str,
        keys: KeyRing | None,
        *,
        bot_id: str = TEST_BOT,
        ops_name: str = "ops",
        **channel_args: Any,
    ) -> Stubs:
        minter = None if keys is None else Minter(keys, bot_id=bot_id, ops_name=ops_name)
        channel = credentials.channel(target, minter, **channel_args)
        return cls(
            channel,
            agent_service_pb2_grpc.AgentServiceStub(channel),
            handoff_service_pb2_grpc.HandoffServiceStub(channel),
            pool_service_pb2_grpc.PoolServiceStub(channel),
            minter,
        )

    def metadata_of(self, agent_id: str) -> tuple[tuple[str, str], ...]:
        """What authenticates agent `agent_id`'s own stream (nothing without a minter)."""
        return () if self.minter is None else self.minter.agent(agent_id)

    async def close(self) -> None:
        await self.channel.close()

    # --- pool -----------------------------------------------------------------------------

    async def create_agent(
        self,
        agent_id: str,
        skills: dict[str, int] | None = None,
        *,
        languages: tuple[str, ...] = ("en",),
        capacity: int = 1,
        display_name: str = "",
    ) -> agent_pb2.Agent:
        response = await self.pool.CreateAgent(
            pool_service_pb2.CreateAgentRequest(
                agent_id=agent_id,
                agent=agent_pb2.Agent(
                    display_name=display_name or agent_id.title(),
                    skills=[
                        agent_pb2.AgentSkill(skill=s, proficiency=p)
                        for s, p in (skills or {"general": 3}).items()
                    ],
                    languages=list(languages),
                    capacity=capacity,
                ),
            )
        )
        return response.agent

    async def get_agent(self, agent_id: str) -> agent_pb2.Agent:
        return (await self.pool.GetAgent(pool_service_pb2.GetAgentRequest(agent_id=agent_id))).agent

    async def pool_status(self) -> pool_service_pb2.PoolStatus:
        return (await self.pool.GetPoolStatus(pool_service_pb2.GetPoolStatusRequest())).status

    # --- handoffs -------------------------------------------------------------------------

    async def request_handoff(self, **fields: Any) -> handoff_pb2.Handoff:
        response = await self.handoffs.RequestHandoff(handoff_request(**fields))
        return response.handoff

    async def get_handoff(self, handoff_id: str) -> handoff_pb2.Handoff:
        request = handoff_service_pb2.GetHandoffRequest(handoff_id=handoff_id)
        return (await self.handoffs.GetHandoff(request)).handoff

    async def cancel_handoff(self, handoff_id: str) -> handoff_pb2.Handoff:
        request = handoff_service_pb2.CancelHandoffRequest(handoff_id=handoff_id)
        return (await self.handoffs.CancelHandoff(request)).handoff

    async def complete(
        self,
        agent_id: str,
        interaction_id: str,
        outcome: int = handoff_pb2.OUTCOME_RESOLVED,
        *,
        disposition_code: str = "done",
        notes: str = "",
    ) -> agent_service_pb2.Interaction:
        response = await self.agents.CompleteInteraction(
            agent_service_pb2.CompleteInteractionRequest(
                agent_id=agent_id,
                interaction_id=interaction_id,
                outcome=outcome,
                disposition_code=disposition_code,
                notes=notes,
            )
        )
        return response.interaction

    def agent(self, agent_id: str) -> AgentDriver:
        return AgentDriver(self, agent_id)


def handoff_request(
    *,
    request_id: str | None = None,
    conversation_id: str = "conv-1",
    customer_id: str = "cust-1",
    interaction_type: str = "general_question",  # no policy of its own: the fallback
    skills: dict[str, int] | None = None,
    language: str = "",
    urgency: int = handoff_pb2.URGENCY_NORMAL,
    summary: str = "Customer asks where the order is.",
    reason: int = handoff_pb2.HANDOFF_REASON_CUSTOMER_REQUEST,
) -> handoff_service_pb2.RequestHandoffRequest:
    return handoff_service_pb2.RequestHandoffRequest(
        request_id=request_id or str(uuid.uuid4()),
        conversation_id=conversation_id,
        customer_id=customer_id,
        interaction_type=interaction_type,
        required_skills=[
            handoff_pb2.SkillRequirement(skill=s, min_proficiency=p)
            for s, p in (skills or {}).items()
        ],
        language=language,
        urgency=urgency,
        summary=summary,
        reason=reason,
    )


class AgentDriver:
    """An agent app on one Connect stream."""

    def __init__(self, stubs: Stubs, agent_id: str) -> None:
        self.stubs = stubs
        self.agent_id = agent_id
        self._outbox: asyncio.Queue[ConnectRequest | None] = asyncio.Queue()
        self.call: Any = None
        self.welcome: ConnectResponse.Welcome | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[ConnectResponse | BaseException] = asyncio.Queue()
        self._commands = 0
        self._stash: list[ConnectResponse] = []  # read while waiting for a command's answer

    async def _requests(self) -> AsyncIterator[ConnectRequest]:
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            yield message

    def _open(self) -> None:
        """Opens the stream. A background task reads it: cancelling a read on a grpc.aio
        call would cancel the whole call, so timeouts apply to the inbox instead."""
        self.call = self.stubs.agents.Connect(
            self._requests(), metadata=self.stubs.metadata_of(self.agent_id)
        )
        self._inbox = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(self.call, self._inbox))

    @staticmethod
    async def _read(call: Any, inbox: asyncio.Queue[ConnectResponse | BaseException]) -> None:
        try:
            async for message in call:
                inbox.put_nowait(message)
            inbox.put_nowait(EOFError("stream ended"))
        except grpc.aio.AioRpcError as error:
            inbox.put_nowait(error)
        except asyncio.CancelledError:
            inbox.put_nowait(EOFError("stream cancelled"))

    async def hello(
        self, status: int = 0, *, heartbeat_every: float | None = None
    ) -> ConnectResponse.Welcome:
        """Logs in; returns the welcome."""
        self._open()
        self.send(hello=ConnectRequest.Hello(agent_id=self.agent_id, initial_status=status))
        first = await self.next()
        assert first.HasField("welcome"), first
        self.welcome = first.welcome
        if heartbeat_every:
            self.start_heartbeats(heartbeat_every)
        return first.welcome

    async def resume(self, token: str | None = None) -> ConnectResponse.Welcome:
        """Resumes the session (with the last welcome's token unless given one)."""
        assert token or self.welcome
        self._outbox = asyncio.Queue()
        self._open()
        self.send(
            resume=ConnectRequest.Resume(
                agent_id=self.agent_id, resume_token=token or self.welcome.resume_token
            )
        )
        first = await self.next()
        assert first.HasField("welcome"), first
        self.welcome = first.welcome
        return first.welcome

    def send(self, command_id: str = "", **command: Any) -> str:
        """Queues one command; returns its command id."""
        if not command_id:
            self._commands += 1
            command_id = f"cmd-{self._commands}"
        self._outbox.put_nowait(ConnectRequest(command_id=command_id, **command))
        return command_id

    def start_heartbeats(self, every: float) -> None:
        async def beat() -> None:
            while True:
                await asyncio.sleep(every)
                self.send(heartbeat=ConnectRequest.Heartbeat())

        self._heartbeat = asyncio.create_task(beat())

    async def next(self, timeout: float = 5.0, *, skip_heartbeats: bool = True) -> ConnectResponse:
        """The next message from the server (raises grpc.aio.AioRpcError when the stream ends
        with an error, EOFError when it ends OK, TimeoutError when nothing comes)."""
        while True:
            if self._stash:
                return self._stash.pop(0)
            async with asyncio.timeout(timeout):
                message = await self._inbox.get()
            if isinstance(message, BaseException):
                self._inbox.put_nowait(message)  # the stream stays ended for later reads
                raise message
            if skip_heartbeats and message.HasField("heartbeat"):
                continue
            return message

    async def expect(self, kind: str, timeout: float = 5.0) -> Any:
        """The next message, which must be of `kind` (e.g. "offer"); returns its payload."""
        message = await self.next(timeout)
        assert message.WhichOneof("event") == kind, f"expected {kind}, got {message}"
        return getattr(message, kind)

    async def offer(self, timeout: float = 5.0) -> agent_service_pb2.Offer:
        return await self.expect("offer", timeout)

    async def answer(self, command_id: str, timeout: float = 5.0) -> ConnectResponse:
        """The server's answer to a command; messages that arrive before it are kept for
        later `next()` calls, in order."""
        held: list[ConnectResponse] = []
        try:
            while True:
                message = await self.next(timeout)
                if message.command_id == command_id:
                    return message
                held.append(message)
        finally:
            self._stash[:0] = held

    async def accept(self, offer_id: str) -> agent_service_pb2.Interaction:
        """Accepts and waits for the confirmation."""
        command_id = self.send(accept_offer=ConnectRequest.AcceptOffer(offer_id=offer_id))
        message = await self.answer(command_id)
        assert message.HasField("assignment_confirmed"), message
        return message.assignment_confirmed.interaction

    async def decline(self, offer_id: str, reason: int = 0) -> ConnectResponse:
        command_id = self.send(
            decline_offer=ConnectRequest.DeclineOffer(offer_id=offer_id, reason=reason)
        )
        return await self.answer(command_id)

    async def set_status(self, status: int) -> ConnectResponse:
        command_id = self.send(set_status=ConnectRequest.SetStatus(status=status))
        return await self.answer(command_id)

    async def quiet(self, seconds: float) -> list[ConnectResponse]:
        """Everything the server says within `seconds` (nothing, ideally)."""
        seen: list[ConnectResponse] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    seen.append(await self.next(seconds))
        return seen

    def leave(self) -> None:
        """Half-closes the stream: a log-out."""
        self._stop_heartbeats()
        self._outbox.put_nowait(None)

    def drop(self) -> None:
        """Cancels the call, as a lost connection does."""
        self._stop_heartbeats()
        if self.call is not None:
            self.call.cancel()

    def _stop_heartbeats(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of `moment`."""
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def error_details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The rich details of a failed call: reason, metadata and field violations."""
    status = rpc_status.from_call(error)
    result: dict[str, Any] = {
        "reason": None,
        "metadata": {},
        "violations": {},
        "retry_delay": None,  # seconds, from a RetryInfo
    }
    if status is None:
        return result
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            result["reason"] = info.reason
            result["metadata"] = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            result["violations"] = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            result["retry_delay"] = retry.retry_delay.ToNanoseconds() / 1e9
    return result
