"""The bench's agents: apps that log in, heartbeat, accept every offer at once and complete
each interaction as soon as it is confirmed, so that they are idle again at once (or, given a
mean work time, after working on it for a random time with that mean, as the soak's do).

A `Crew` is one client process's agents. It tells whoever waits for a conversation (the
bench makes conversation ids unique) when its offer arrived and when its interaction was
completed, and counts completions and anything unexpected. At the end it stops accepting and
waits until every accept it sent was answered and every completion returned, so that its
count of completions is the server's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import grpc

from humanline.client.agents import Outbox
from humanline.client.credentials import Minter
from humanline.v1 import agent_service_pb2, agent_service_pb2_grpc, handoff_pb2

CALL_TIMEOUT = 60.0
HELLO_TIMEOUT = 120.0  # a hello waits for its store write, behind thousands of others
HELLO_ATTEMPTS = 3

ConnectRequest = agent_service_pb2.ConnectRequest


class Crew:
    """One process's agents on their streams, and what they saw."""

    def __init__(
        self,
        stub: agent_service_pb2_grpc.AgentServiceStub,
        errors: Counter[str],
        minter: Minter | None = None,
        work: float = 0.0,
    ) -> None:
        self.stub = stub
        self.work = work  # mean seconds between the confirmation and the completion
        self.errors = errors
        self.minter = minter
        self.completed = 0
        self._offers: dict[str, asyncio.Future[float]] = {}  # conversation id -> arrival
        self._completed: dict[str, asyncio.Future[float]] = {}
        self._agents: list[_Agent] = []
        self._completions: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._accepts: set[str] = set()  # offer ids accepted, not yet answered
        self._settled = asyncio.Event()  # no accepts or completions in flight
        self._settled.set()
        self.closing = False

    async def connect(self, agent_ids: list[str], concurrency: int) -> int:
        """Logs the agents in, `concurrency` hellos at a time; returns how many were
        welcomed (the others are counted in `errors`)."""
        limit = asyncio.Semaphore(concurrency)

        async def one(agent_id: str) -> None:
            async with limit:
                agent = _Agent(agent_id, self)
                if await agent.connect():
                    self._agents.append(agent)

        await asyncio.gather(*(one(agent_id) for agent_id in agent_ids))
        return len(self._agents)

    def offer(self, conversation_id: str) -> asyncio.Future[float]:
        """A future for when the first offer of `conversation_id` reached its agent
        (monotonic time). Cancel it if the handoff was never requested."""
        future = asyncio.get_running_loop().create_future()
        self._offers[conversation_id] = future
        return future

    def completion(self, conversation_id: str) -> asyncio.Future[float]:
        """A future for when the interaction of `conversation_id` was completed (the time its
        CompleteInteraction returned)."""
        future = asyncio.get_running_loop().create_future()
        self._completed[conversation_id] = future
        return future

    def forget(self, conversation_id: str) -> None:
        """Nobody waits for `conversation_id` any more."""
        self._offers.pop(conversation_id, None)
        self._completed.pop(conversation_id, None)

    async def finish(self) -> None:
        """Accepts no more offers; returns once the accepts sent are answered and the
        completions have returned."""
        self._accepting = False
        await self._settled.wait()

    def unfinished(self) -> int:
        """Accepts unanswered and completions in flight."""
        return len(self._accepts) + len(self._completions)

    def _check_settled(self) -> None:
        if self._accepts or self._completions:
            self._settled.clear()
        else:
            self._settled.set()

    def close(self) -> None:
        """Ends every stream (the process is about to exit)."""
        self.closing = True
        for agent in self._agents:
            agent.close()

    def offer_arrived(self, offer: agent_service_pb2.Offer) -> ConnectRequest | None:
        """An offer reached its agent now; returns the accept to send, if still accepting."""
        future = self._offers.pop(offer.details.conversation_id, None)
        if future is not None and not future.done():
            future.set_result(time.monotonic())
        if not self._accepting:
            return None
        self._accepts.add(offer.offer_id)
        self._check_settled()
        accept = ConnectRequest.AcceptOffer(offer_id=offer.offer_id)
        return ConnectRequest(command_id=offer.offer_id, accept_offer=accept)

    def answered(self, command_id: str) -> None:
        """The server answered the command `command_id` (an accept's is its offer id)."""
        self._accepts.discard(command_id)
        self._check_settled()

    def confirmed(self, agent_id: str, interaction: agent_service_pb2.Interaction) -> None:
        """`agent_id` holds `interaction`: it completes it at once."""
        task = asyncio.create_task(self._completing(agent_id, interaction))
        self._completions.add(task)
        self._check_settled()
        task.add_done_callback(self._completion_done)

    def _completion_done(self, task: asyncio.Task[None]) -> None:
        self._completions.discard(task)
        self._check_settled()

    async def _completing(self, agent_id: str, interaction: agent_service_pb2.Interaction) -> None:
        if self.work > 0:
            await asyncio.sleep(random.expovariate(1 / self.work))
        request = agent_service_pb2.CompleteInteractionRequest(
            agent_id=agent_id,
            interaction_id=interaction.interaction_id,
            outcome=handoff_pb2.OUTCOME_RESOLVED,
            disposition_code="bench/resolved",
        )
        try:
            await self.stub.CompleteInteraction(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            self.errors[f"complete {error.code().name}"] += 1
            return
        self.completed += 1
        future = self._completed.pop(interaction.details.conversation_id, None)
        if future is not None and not future.done():
            future.set_result(time.monotonic())


class _Agent:
    """One agent's app: its stream, its heartbeats."""

    def __init__(self, agent_id: str, crew: Crew) -> None:
        self.agent_id = agent_id
        self.crew = crew
        self.outbox = Outbox()
        self.call: grpc.aio.StreamStreamCall[ConnectRequest, agent_service_pb2.ConnectResponse]
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> bool:
        """Hello until welcomed (a few attempts); then reads and heartbeats in tasks."""
        errors = self.crew.errors
        for _ in range(HELLO_ATTEMPTS):
            self.outbox = Outbox()
            self.outbox.put(ConnectRequest(hello=ConnectRequest.Hello(agent_id=self.agent_id)))
            minter = self.crew.minter
            metadata = () if minter is None else minter.agent(self.agent_id)
            self.call = self.crew.stub.Connect(self.outbox, metadata=metadata)
            messages = aiter(self.call)
            try:
                async with asyncio.timeout(HELLO_TIMEOUT):
                    first = await anext(messages)
            except (grpc.aio.AioRpcError, TimeoutError, StopAsyncIteration) as error:
                code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "timeout"
                errors[f"hello {code}"] += 1
                self.call.cancel()
                continue
            if first.WhichOneof("event") != "welcome":
                errors[f"hello answered with {first.WhichOneof('event')}"] += 1
                self.call.cancel()
                continue
            every = first.welcome.heartbeat_interval.ToTimedelta().total_seconds()
            self.tasks = [
                asyncio.create_task(self._read(messages)),
                asyncio.create_task(self._heartbeats(every)),
            ]
            return True
        return False

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.call.cancel()

    async def _read(self, messages: AsyncIterator[agent_service_pb2.ConnectResponse]) -> None:
        crew = self.crew
        try:
            async for message in messages:
                kind = message.WhichOneof("event")
                if kind == "offer":
                    accept = crew.offer_arrived(message.offer)
                    if accept is not None:
                        self.outbox.put(accept)
                elif kind == "assignment_confirmed":
                    interaction = message.assignment_confirmed.interaction
                    crew.confirmed(self.agent_id, interaction)
                    crew.answered(interaction.interaction_id)  # the accepted offer's id
                elif kind == "offer_rescinded":
                    reason = agent_service_pb2.RescindReason.Name(message.offer_rescinded.reason)
                    crew.errors[f"offer rescinded {reason}"] += 1
                    crew.answered(message.offer_rescinded.offer_id)
                elif kind == "command_rejected":
                    crew.errors[f"command rejected {message.command_rejected.reason}"] += 1
                if message.command_id:
                    crew.answered(message.command_id)
        except grpc.aio.AioRpcError as error:
            if not crew.closing:
                crew.errors[f"agent stream {error.code().name}"] += 1
            return
        if not crew.closing:
            crew.errors["agent stream ended"] += 1

    async def _heartbeats(self, every: float) -> None:
        """One heartbeat per interval, as the welcome asks, the first at a random moment
        within it (so that thousands of agents do not beat in step)."""
        await asyncio.sleep(random.uniform(0, every))
        while True:
            self.outbox.put(ConnectRequest(heartbeat=ConnectRequest.Heartbeat()))
            await asyncio.sleep(every)
