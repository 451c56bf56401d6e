"""The lifecycle ceiling: humanline's own RPCs and messages on grpc.aio, with nothing behind
them, measured in the same run and with the same clients as humanline.

The server (`python -m humanline.bench.bare`, on HUMANLINE_LISTEN like `humanline serve`)
answers the calls the bench's clients make, with the same protobuf messages, from a few
dictionaries: CreateAgent records the agent's one skill; an agent's stream is welcomed and
its heartbeats answered; RequestHandoff offers the handoff to a free agent with the skill
(first come, first served) or queues it; accepting confirms; CompleteInteraction frees the
agent, who takes the next queued handoff of its skill. No store, no durability, no
validation, no logging, no matching rules, no timers: what is left is what grpc.aio and
protobuf cost for one lifecycle, which no dispatch service built on them can beat. The
echo ceiling (`echo`) is one unary call; this one is the whole lifecycle's shape (two unary
calls, an offer pushed on a stream, an accept answered on it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

import grpc

from humanline.bench.echo import serve_until_signalled
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
Request = handoff_service_pb2.RequestHandoffRequest
Context = grpc.aio.ServicerContext[Any, Any]
HEARTBEAT_SECONDS = 10


class Dispatch:
    """Free agents and waiting handoffs per skill; offers by id."""

    def __init__(self) -> None:
        self.skill_of: dict[str, str] = {}
        self.streams: dict[str, asyncio.Queue[ConnectResponse]] = {}
        self.free: defaultdict[str, deque[str]] = defaultdict(deque)
        self.waiting: defaultdict[str, deque[tuple[Request, str]]] = defaultdict(deque)
        self.offers: dict[str, tuple[str, Request, str]] = {}  # id -> agent, request, handoff

    def offer(self, agent_id: str, request: Request, handoff_id: str) -> None:
        offer_id = str(uuid.uuid4())
        self.offers[offer_id] = (agent_id, request, handoff_id)
        self.streams[agent_id].put_nowait(
            ConnectResponse(
                offer=agent_service_pb2.Offer(
                    offer_id=offer_id, details=_details(request, handoff_id)
                )
            )
        )

    def freed(self, agent_id: str) -> None:
        skill = self.skill_of[agent_id]
        if self.waiting[skill]:
            self.offer(agent_id, *self.waiting[skill].popleft())
        else:
            self.free[skill].append(agent_id)


def _details(request: Request, handoff_id: str) -> agent_service_pb2.InteractionDetails:
    details = agent_service_pb2.InteractionDetails(
        handoff_id=handoff_id,
        conversation_id=request.conversation_id,
        customer_id=request.customer_id,
        interaction_type=request.interaction_type,
        urgency=request.urgency,
        summary=request.summary,
        reason=request.reason,
        required_skills=request.required_skills,
    )
    details.create_time.GetCurrentTime()
    return details


class Pool(pool_service_pb2_grpc.PoolServiceServicer):
    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def CreateAgent(
        self, request: pool_service_pb2.CreateAgentRequest, context: Context
    ) -> pool_service_pb2.CreateAgentResponse:
        self._dispatch.skill_of[request.agent_id] = request.agent.skills[0].skill
        agent = agent_pb2.Agent(agent_id=request.agent_id, skills=request.agent.skills)
        return pool_service_pb2.CreateAgentResponse(agent=agent)


class Handoffs(handoff_service_pb2_grpc.HandoffServiceServicer):
    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def RequestHandoff(
        self, request: Request, context: Context
    ) -> handoff_service_pb2.RequestHandoffResponse:
        dispatch, handoff_id = self._dispatch, str(uuid.uuid4())
        skill = request.required_skills[0].skill
        if dispatch.free[skill]:
            dispatch.offer(dispatch.free[skill].popleft(), request, handoff_id)
        else:
            dispatch.waiting[skill].append((request, handoff_id))
        handoff = handoff_pb2.Handoff(
            handoff_id=handoff_id,
            request_id=request.request_id,
            conversation_id=request.conversation_id,
            state=handoff_pb2.HANDOFF_STATE_QUEUED,
        )
        return handoff_service_pb2.RequestHandoffResponse(handoff=handoff)


class Agents(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def Connect(
        self, request_iterator: AsyncIterator[ConnectRequest], context: Context
    ) -> AsyncIterator[ConnectResponse]:
        dispatch, requests = self._dispatch, aiter(request_iterator)
        agent_id = (await anext(requests)).hello.agent_id
        outbox: asyncio.Queue[ConnectResponse] = asyncio.Queue()
        dispatch.streams[agent_id] = outbox
        welcome = ConnectResponse.Welcome(session_id=str(uuid.uuid4()))
        welcome.heartbeat_interval.FromSeconds(HEARTBEAT_SECONDS)
        yield ConnectResponse(welcome=welcome)
        reader = asyncio.create_task(self._read(agent_id, requests, outbox))
        dispatch.freed(agent_id)
        try:
            while True:
                yield await outbox.get()
        finally:
            reader.cancel()

    async def _read(
        self,
        agent_id: str,
        requests: AsyncIterator[ConnectRequest],
        outbox: asyncio.Queue[ConnectResponse],
    ) -> None:
        async for command in requests:
            if command.HasField("heartbeat"):
                outbox.put_nowait(ConnectResponse(heartbeat=ConnectResponse.Heartbeat()))
            elif command.HasField("accept_offer"):
                offer_id = command.accept_offer.offer_id
                _, request, handoff_id = self._dispatch.offers[offer_id]
                interaction = agent_service_pb2.Interaction(
                    interaction_id=offer_id, details=_details(request, handoff_id)
                )
                outbox.put_nowait(
                    ConnectResponse(
                        command_id=command.command_id,
                        assignment_confirmed=ConnectResponse.AssignmentConfirmed(
                            interaction=interaction
                        ),
                    )
                )

    async def CompleteInteraction(
        self, request: agent_service_pb2.CompleteInteractionRequest, context: Context
    ) -> agent_service_pb2.CompleteInteractionResponse:
        agent_id, handoff_request, handoff_id = self._dispatch.offers.pop(request.interaction_id)
        self._dispatch.freed(agent_id)
        interaction = agent_service_pb2.Interaction(
            interaction_id=request.interaction_id,
            details=_details(handoff_request, handoff_id),
            outcome=request.outcome,
            disposition_code=request.disposition_code,
        )
        return agent_service_pb2.CompleteInteractionResponse(interaction=interaction)


async def serve() -> None:
    """Serves until SIGTERM or SIGINT."""
    dispatch = Dispatch()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pool_service_pb2_grpc.add_PoolServiceServicer_to_server(Pool(dispatch), server)
    handoff_service_pb2_grpc.add_HandoffServiceServicer_to_server(Handoffs(dispatch), server)
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(Agents(dispatch), server)
    await serve_until_signalled(server)


if __name__ == "__main__":
    asyncio.run(serve())
