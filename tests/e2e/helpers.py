"""Small helpers for e2e tests: waiting for a condition, reading errors, summing up the pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from humanline.v1 import agent_pb2, handoff_pb2, pool_service_pb2
from tests.support.client import AgentDriver, ConnectResponse, error_details

T = TypeVar("T")

# Waits for something the server does on its own (a match, a sweep, a drop being recorded).
EVENTUALLY = 20.0
# Waits for one message on a stream.
READ_TIMEOUT = 20.0


async def eventually(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool],
    *,
    timeout: float = EVENTUALLY,
    what: str = "the condition",
) -> T:
    """Calls `probe` until `predicate` holds for its result; fails after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if predicate(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s; last: {value}")
        await asyncio.sleep(0.1)


@dataclass
class RpcFailure:
    """A failed call: its code and its rich details (reason, metadata, field violations)."""

    code: grpc.StatusCode
    reason: str | None
    metadata: dict[str, str]
    violations: dict[str, str]


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    details = error_details(error)
    return RpcFailure(error.code(), details["reason"], details["metadata"], details["violations"])


async def refused(call: Awaitable[Any]) -> RpcFailure:
    """Awaits a call that must fail; returns how it failed."""
    try:
        result = await call
    except grpc.aio.AioRpcError as error:
        return failure(error)
    raise AssertionError(f"the call succeeded: {result}")


async def stream_end(driver: AgentDriver, timeout: float = READ_TIMEOUT) -> RpcFailure:
    """Reads an agent stream until it ends with an error; returns the error (fails if the
    stream ends OK)."""
    try:
        while True:
            await driver.next(timeout)
    except grpc.aio.AioRpcError as error:
        return failure(error)


async def watch_end(call: grpc.aio.UnaryStreamCall, timeout: float = READ_TIMEOUT) -> RpcFailure:
    """Reads a server stream (e.g. WatchHandoff) until it ends with an error; returns the
    error (fails if the stream ends OK)."""
    try:
        while await asyncio.wait_for(call.read(), timeout) is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as error:
        return failure(error)
    raise AssertionError("the stream ended OK")


async def next_of(driver: AgentDriver, kind: str, timeout: float = READ_TIMEOUT) -> Any:
    """The next message of `kind` on an agent stream (e.g. "offer"), skipping others."""
    while True:
        message: ConnectResponse = await driver.next(timeout)
        if message.WhichOneof("event") == kind:
            return getattr(message, kind)


@dataclass
class PoolCounts:
    """GetPoolStatus as plain dicts keyed by enum names."""

    agents: dict[str, int]
    skills: dict[str, tuple[int, int]]
    languages: dict[str, tuple[int, int]]
    queue_by_urgency: dict[str, int]
    queue_by_type: dict[str, int]
    oldest_wait: float

    @property
    def waiting(self) -> int:
        return sum(self.queue_by_urgency.values())


def pool_counts(status: pool_service_pb2.PoolStatus) -> PoolCounts:
    return PoolCounts(
        agents={agent_pb2.AgentState.Name(c.state): c.count for c in status.agents_by_state},
        skills={c.key: (c.available_agents, c.free_capacity) for c in status.skills},
        languages={c.key: (c.available_agents, c.free_capacity) for c in status.languages},
        queue_by_urgency={
            handoff_pb2.Urgency.Name(c.urgency): c.count for c in status.queue_by_urgency
        },
        queue_by_type={c.interaction_type: c.count for c in status.queue_by_interaction_type},
        oldest_wait=status.oldest_wait.ToTimedelta().total_seconds(),
    )


def agents(**counts: int) -> dict[str, int]:
    """Agents by state, every state present: agents(AVAILABLE=1) has the others at 0."""
    result = dict.fromkeys((v.name for v in agent_pb2.AgentState.DESCRIPTOR.values if v.number), 0)
    for state, count in counts.items():
        result[f"AGENT_STATE_{state}"] = count
    return result


def queue(**counts: int) -> dict[str, int]:
    """Waiting handoffs by urgency, every urgency present: queue(HIGH=1)."""
    result = dict.fromkeys((v.name for v in handoff_pb2.Urgency.DESCRIPTOR.values if v.number), 0)
    for urgency, count in counts.items():
        result[f"URGENCY_{urgency}"] = count
    return result
