"""Limits over real gRPC: a caller's rate, a peer's open streams, the message size, bytes that
are no message, and a request breaking thousands of rules. Each limit refuses with a clear
status, changes nothing, and leaves the server serving everybody else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from humanline.domain.access import Principal, Role
from humanline.domain.rules import DispatchPolicy
from humanline.grpc.server import Limits
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
)
from tests.conftest import Served, serve
from tests.support.client import AgentDriver, ConnectRequest, Stubs, error_details

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
async def limited(
    tmp_path: Path, policy: DispatchPolicy, request: pytest.FixtureRequest
) -> AsyncIterator[Served]:
    """A server with the limits the test names (`indirect` parametrization)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}"
    served = await serve(url, policy, limits=request.param)
    yield served
    await served.stop()


def _queued(status: pool_service_pb2.PoolStatus) -> int:
    return sum(u.count for u in status.queue_by_urgency)


async def _healthy(target: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        return answer.status == health_pb2.HealthCheckResponse.SERVING


def _other_bot(served: Served) -> Stubs:
    """Stubs whose handoff calls are another bot's (and pool calls other ops')."""
    return Stubs.connect(served.target, served.keys, bot_id="other-bot", ops_name="other-ops")


# One token a second: the four calls of the burst leave the bucket empty even on a slow
# machine (at 4 a second, four calls taking over 250 ms refilled it and failed CI once).
@pytest.mark.parametrize("limited", [Limits(rate_per_second=1, burst=4)], indirect=True)
async def test_a_caller_over_its_rate_gets_retry_info_changes_nothing_and_others_go_on(
    limited: Served,
) -> None:
    served = limited
    bot = served.stubs()
    for i in range(4):  # the burst
        await bot.request_handoff(conversation_id=f"c{i}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await bot.request_handoff(conversation_id="one-too-many")
    assert refused.value.code() == RESOURCE_EXHAUSTED
    details = error_details(refused.value)
    assert details["reason"] == "RATE_LIMITED"
    assert details["metadata"]["caller"] == "bot:test-bot"
    assert 0 < details["retry_delay"] <= 1.0 + 0.01  # one token at 1 a second
    # Nothing was queued by the refused call (ops have a rate of their own).
    other = _other_bot(served)
    assert _queued(await other.pool_status()) == 4
    # Another bot (and ops, above) are served meanwhile, and so is health.
    await other.request_handoff(conversation_id="other")
    assert await _healthy(served.target)
    # Once the delay RetryInfo gave has passed, the caller is served again.
    await asyncio.sleep(details["retry_delay"])
    await bot.request_handoff(conversation_id="after-the-wait")
    await bot.close()
    await other.close()


@pytest.mark.parametrize("limited", [Limits(rate_per_second=2, burst=3)], indirect=True)
async def test_commands_on_an_agents_stream_count_against_its_rate(
    limited: Served,
) -> None:
    served = limited
    ops = served.stubs()
    await ops.create_agent("ann")  # ops' own bucket
    ann = AgentDriver(ops, "ann")
    await ann.hello()  # one of ann's three
    sent = [ann.send(heartbeat=ConnectRequest.Heartbeat()) for _ in range(4)]
    answers = {}
    for _ in sent:
        message = await ann.next(skip_heartbeats=False)
        answers[message.command_id] = message
    kinds = [answers[c].WhichOneof("event") for c in sent]
    assert kinds[:2] == ["heartbeat", "heartbeat"]
    assert kinds[2:] == ["command_rejected", "command_rejected"]
    rejected = answers[sent[2]].command_rejected
    assert rejected.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    # The stream stays open: once a token is back, commands are answered again.
    await asyncio.sleep(0.6)
    command = ann.send(heartbeat=ConnectRequest.Heartbeat())
    message = await ann.next(skip_heartbeats=False)
    assert (message.command_id, message.WhichOneof("event")) == (command, "heartbeat")
    ann.leave()
    await ops.close()


@pytest.mark.parametrize("limited", [Limits(streams_per_peer=2)], indirect=True)
async def test_a_peer_holds_at_most_its_limit_of_streams(limited: Served) -> None:
    served = limited
    stubs = served.stubs()
    handoff = await stubs.request_handoff()
    watch = handoff_service_pb2.WatchHandoffRequest(handoff_id=handoff.handoff_id)
    first = stubs.handoffs.WatchHandoff(watch)
    second = stubs.handoffs.WatchHandoff(watch)
    await first.read()
    await second.read()
    third = stubs.handoffs.WatchHandoff(watch)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await third.read()
    assert refused.value.code() == RESOURCE_EXHAUSTED
    assert error_details(refused.value)["reason"] == "TOO_MANY_STREAMS"
    # An agent's session from the same address counts too.
    await stubs.create_agent("ann")
    ann = AgentDriver(stubs, "ann")
    ann._open()
    ann.send(hello=ConnectRequest.Hello(agent_id="ann"))
    with pytest.raises(grpc.aio.AioRpcError) as session_refused:
        await ann.next()
    assert session_refused.value.code() == RESOURCE_EXHAUSTED
    # Unary calls are not streams: served as ever.
    await stubs.get_handoff(handoff.handoff_id)
    # A stream that ends frees its place.
    first.cancel()
    deadline = time.monotonic() + 5
    while served.running.gate.streams.open_streams("ipv4:127.0.0.1:1") > 1:
        assert time.monotonic() < deadline, "the cancelled stream was never released"
        await asyncio.sleep(0.02)
    welcome = await AgentDriver(stubs, "ann").hello()
    assert welcome.agent.agent_id == "ann"
    second.cancel()
    await stubs.close()


@pytest.mark.parametrize("limited", [Limits(max_message_bytes=8192)], indirect=True)
async def test_an_oversized_message_is_refused_and_the_server_goes_on(
    limited: Served,
) -> None:
    served = limited
    stubs = served.stubs()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.request_handoff(summary="\U0001f600" * 3000)  # 12 KB of UTF-8
    assert refused.value.code() == RESOURCE_EXHAUSTED
    assert _queued(await stubs.pool_status()) == 0
    assert (await stubs.request_handoff(summary="fits")).summary == "fits"
    assert await _healthy(served.target)
    await stubs.close()


@pytest.mark.parametrize("limited", [Limits()], indirect=True)
async def test_bytes_that_are_no_message_are_invalid_argument(
    limited: Served,
) -> None:
    served = limited
    stubs = served.stubs()
    assert stubs.minter is not None
    junk = b"\xff\xff\xff\x07"
    raw = grpc.aio.insecure_channel(served.target)
    ops = stubs.minter.metadata_for(Principal(Role.OPS, "ops"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw.unary_unary("/humanline.v1.PoolService/GetAgent")(junk, metadata=ops)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(refused.value)["reason"] == "MALFORMED_MESSAGE"
    watch = raw.unary_stream("/humanline.v1.HandoffService/WatchHandoff")(junk, metadata=ops)
    with pytest.raises(grpc.aio.AioRpcError) as watch_refused:
        await watch.read()
    assert watch_refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # On an agent's stream, one bad message is refused and the session goes on.
    await stubs.create_agent("ann")
    outbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def requests() -> AsyncIterator[bytes]:
        while True:
            yield await outbox.get()

    session = raw.stream_stream("/humanline.v1.AgentService/Connect")(
        requests(), metadata=stubs.metadata_of("ann")
    )
    outbox.put_nowait(
        ConnectRequest(hello=ConnectRequest.Hello(agent_id="ann")).SerializeToString()
    )
    welcome = agent_service_pb2.ConnectResponse.FromString(await session.read())
    assert welcome.HasField("welcome")
    outbox.put_nowait(junk)
    rejected = agent_service_pb2.ConnectResponse.FromString(await session.read())
    assert rejected.command_rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rejected.command_rejected.reason == "MALFORMED_MESSAGE"
    outbox.put_nowait(
        ConnectRequest(command_id="hb", heartbeat=ConnectRequest.Heartbeat()).SerializeToString()
    )
    ack = agent_service_pb2.ConnectResponse.FromString(await session.read())
    assert (ack.command_id, ack.WhichOneof("event")) == ("hb", "heartbeat")
    session.cancel()
    await raw.close()
    assert (await stubs.get_agent("ann")).agent_id == "ann"
    await stubs.close()


@pytest.mark.parametrize("limited", [Limits()], indirect=True)
async def test_a_request_breaking_thousands_of_rules_names_the_first_twenty(
    limited: Served,
) -> None:
    served = limited
    stubs = served.stubs()
    await stubs.create_agent("ann")
    request = pool_service_pb2.UpdateAgentRequest(
        agent=agent_pb2.Agent(agent_id="ann", display_name="Ann"),
        update_mask=field_mask_pb2.FieldMask(paths=[f"bad_{i}" for i in range(5000)]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.pool.UpdateAgent(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(refused.value)["violations"]
    assert list(violations) == [f"update_mask.paths[{i}]" for i in range(20)]
    assert refused.value.details().endswith("and 4980 more")
    assert (await stubs.get_agent("ann")).display_name == "Ann"
    await stubs.close()


@pytest.mark.parametrize("limited", [Limits()], indirect=True)
async def test_opaque_tokens_have_a_length_limit_too(limited: Served) -> None:
    stubs = limited.stubs()
    await stubs.create_agent("ann")
    with pytest.raises(grpc.aio.AioRpcError) as page:
        await stubs.pool.ListAgents(pool_service_pb2.ListAgentsRequest(page_token="e" * 600))
    assert error_details(page.value)["violations"] == {
        "page_token": "is not a token returned by ListAgents"
    }
    ann = AgentDriver(stubs, "ann")
    with pytest.raises(grpc.aio.AioRpcError) as resume:
        await ann.resume("t" * 300)
    assert resume.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(error_details(resume.value)["violations"]) == ["resume.resume_token"]
    await stubs.close()


@pytest.mark.parametrize(
    "limited", [Limits(max_connection_age=1.0, max_connection_age_grace=0.5)], indirect=True
)
async def test_an_aged_connection_is_closed_and_its_agent_resumes_with_its_work(
    limited: Served,
) -> None:
    # (grpc.max_connection_age_ms: after about a second (give or take 10%) the server sends
    # GOAWAY, half a second later it closes the connection, streams and all; a client
    # connects again, to whichever replica its balancer picks.)
    client = limited.stubs()
    try:
        await client.create_agent("lea", {"general": 3})
        lea = client.agent("lea")
        welcome = await lea.hello()
        handoff = await client.request_handoff()
        interaction = await lea.accept((await lea.offer()).offer_id)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await lea.next(timeout=10)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        # The cut is a drop: the session waits in its grace period, and the app resumes it.
        lea = client.agent("lea")
        resumed = await lea.resume(welcome.resume_token)
        assert resumed.resumed
        assert [i.interaction_id for i in resumed.active_interactions] == [
            interaction.interaction_id
        ]
        await client.complete("lea", interaction.interaction_id)
        state = (await client.get_handoff(handoff.handoff_id)).state
        assert state == handoff_pb2.HANDOFF_STATE_COMPLETED
    finally:
        await client.close()
