"""The Python SDK (`humanline.client`) against the real server in a process of its own.

A bot, an agent's app and ops each use their client as the README shows: a handoff goes from
request to feedback; failures come back as `ApiError` with the server's reason and field
violations. The agent's client keeps its session through a server crash and restart, a
SIGTERM drain, and a network cut (a TCP proxy the test controls), resuming with its work;
logs in afresh when the session could not be kept; and gives up only on what retrying cannot
fix, such as another connection taking the session over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from humanline.client import (
    AgentClient,
    ApiError,
    Backoff,
    CommandRejected,
    HandoffClient,
    PoolClient,
    RiskSignals,
)
from humanline.domain.access import Principal, Role
from humanline.v1 import agent_pb2, agent_service_pb2, handoff_pb2
from tests.e2e.conftest import StartServer
from tests.e2e.helpers import eventually
from tests.e2e.process import KEYS
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.e2e

OPS = KEYS.issue(Principal(Role.OPS, "ops"))
BOT = KEYS.issue(Principal(Role.BOT, "sdk-bot"))
FAST = Backoff(initial=0.1, maximum=1.0)  # reconnect quickly; the server restarts in seconds
READ = 30.0  # seconds to wait for an offer


def agent_token(agent_id: str) -> str:
    return KEYS.issue(Principal(Role.AGENT, agent_id))


async def next_offer(agent: AgentClient) -> agent_service_pb2.Offer:
    async def first() -> agent_service_pb2.Offer:
        async for offer in agent.offers():
            return offer
        raise AssertionError("offers() ended without an offer")

    return await asyncio.wait_for(first(), READ)


async def request(bots: HandoffClient, customer: str = "u-1") -> handoff_pb2.Handoff:
    return await bots.request_handoff(
        conversation_id=f"conv-{customer}",
        customer_id=customer,
        interaction_type="billing_dispute",
        skills={"billing": 3},
        language="en",
        urgency="high",
        summary="Charged twice for one order",
        signals=RiskSignals(distress=True, disputed_amount=120.0),
    )


@pytest.fixture
async def pool(start_server: StartServer) -> AsyncIterator[PoolClient]:
    server = await start_server()
    async with PoolClient(server.target, token=OPS) as client:
        yield client


async def test_a_bot_an_agent_and_ops_take_a_handoff_from_request_to_feedback(
    pool: PoolClient,
) -> None:
    target = pool.target
    created = await pool.create_agent(
        "ana", display_name="Ana", skills={"billing": 4}, languages=["en"], capacity=2
    )
    assert (created.agent_id, created.capacity) == ("ana", 2)
    async with (
        AgentClient("ana", target, token=agent_token("ana")) as agent,
        HandoffClient(target, token=BOT) as bots,
    ):
        assert agent.connected
        assert agent.status == "available"
        assert agent.session_id
        handoff = await request(bots)
        assert handoff.state in (
            handoff_pb2.HANDOFF_STATE_QUEUED,
            handoff_pb2.HANDOFF_STATE_OFFERED,
        )
        assert "billing_dispute" in handoff.routing

        offer = await next_offer(agent)
        assert offer.details.handoff_id == handoff.handoff_id
        assert offer.details.summary == "Charged twice for one order"
        interaction = await agent.accept(offer)
        assert interaction.interaction_id == offer.offer_id
        assert set(agent.interactions) == {interaction.interaction_id}
        seen = await bots.get_handoff(handoff.handoff_id)
        assert (seen.state, seen.assigned_agent.agent_id) == (
            handoff_pb2.HANDOFF_STATE_ASSIGNED,
            "ana",
        )

        done = await agent.complete(interaction, outcome="resolved", disposition_code="refund")
        assert done.outcome == handoff_pb2.OUTCOME_RESOLVED
        assert agent.interactions == {}
        again = await agent.complete(interaction, outcome="resolved", disposition_code="refund")
        assert again.complete_time == done.complete_time  # idempotent by content

        states = [h.state async for h in bots.watch_handoff(handoff.handoff_id)]
        assert states[-1] == handoff_pb2.HANDOFF_STATE_COMPLETED  # and the iteration ended
        rated = await bots.record_feedback(handoff.handoff_id, csat=5, reason_tags=["fast"])
        assert rated.feedback.csat == 5

        await agent.set_status("away")
        assert agent.status == "away"
        assert (await pool.get_agent("ana")).state == agent_pb2.AGENT_STATE_AWAY
        listed = [a.agent_id async for a in pool.list_agents(state="away")]
        assert listed == ["ana"]
        status = await pool.pool_status()
        away = {s.state: s.count for s in status.agents_by_state}[agent_pb2.AGENT_STATE_AWAY]
        assert away == 1
    # Leaving the block logged ana out.
    await eventually(
        lambda: pool.get_agent("ana"),
        lambda a: a.state == agent_pb2.AGENT_STATE_OFFLINE,
        what="ana offline after the log-out",
    )
    exported = [r async for r in pool.export_outcomes()]
    assert [r.handoff.handoff_id for r in exported] == [handoff.handoff_id]
    report = await pool.quality_report(group_by="interaction_type")
    assert report.overall.completed == 1


async def test_failures_come_back_as_api_errors_with_reasons_and_field_violations(
    pool: PoolClient,
) -> None:
    target = pool.target
    with pytest.raises(ApiError) as bad:
        await pool.create_agent("bo", skills={"billing": 9})
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad.value.field_violations] == ["agent.skills[0].proficiency"]

    await pool.create_agent("bo", skills={"billing": 4})
    with pytest.raises(ApiError) as taken:
        await pool.create_agent("bo", skills={"billing": 4})
    assert taken.value.code == grpc.StatusCode.ALREADY_EXISTS

    async with HandoffClient(target, token=BOT) as bots:
        with pytest.raises(ApiError) as missing:
            await bots.get_handoff("00000000-0000-4000-8000-000000000000")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(ValueError, match="low, normal, high, critical"):
            await bots.request_handoff(
                conversation_id="c", customer_id="u", interaction_type="x", urgency="soon"
            )  # type: ignore[arg-type]

    async with AgentClient("bo", target, token=agent_token("bo")) as agent:
        with pytest.raises(CommandRejected) as rejected:
            await agent.accept("00000000-0000-4000-8000-000000000000")
        assert rejected.value.code == grpc.StatusCode.NOT_FOUND
        assert rejected.value.reason
        assert agent.connected  # a refused command leaves the stream open

    with pytest.raises(ApiError) as unknown:
        async with AgentClient("nobody", target, token=agent_token("nobody")):
            pass
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND

    with pytest.raises(ApiError) as anonymous:
        async with AgentClient("bo", target, token="not-a-token"):
            pass
    assert anonymous.value.code == grpc.StatusCode.UNAUTHENTICATED

    async with PoolClient(target, token=BOT) as wrong_role:
        with pytest.raises(ApiError) as denied:
            await wrong_role.pool_status()
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("stop", ["kill", "terminate"])
async def test_the_agent_client_resumes_with_its_work_after_the_server_restarts(
    start_server: StartServer, stop: str
) -> None:
    server = await start_server(HUMANLINE_GRACE_PERIOD_SECONDS="120")
    async with PoolClient(server.target, token=OPS) as pool:
        await pool.create_agent("cy", skills={"billing": 4}, languages=["en"])
    agent = AgentClient("cy", server.target, token=agent_token("cy"), backoff=FAST)
    drains: list[agent_service_pb2.ConnectResponse] = []

    async def watch() -> None:
        async for event in agent.events():
            if event.WhichOneof("event") == "drain":
                drains.append(event)

    bots = HandoffClient(server.target, token=BOT, wait_for_ready=True, timeout=60)
    try:
        first = await agent.connect()
        watcher = asyncio.create_task(watch())
        await request(bots, "u-1")
        held = await agent.accept(await next_offer(agent))

        if stop == "kill":
            await server.kill()  # a crash: no goodbye
        else:
            assert await server.terminate() == 0  # a deploy: the server says `drain`
            assert len(drains) == 1
            assert drains[0].drain.HasField("resume_before")
        await eventually(
            lambda: asyncio.sleep(0, agent.connected), lambda up: not up, what="the drop seen"
        )
        await server.start()

        welcome = await eventually(
            lambda: asyncio.sleep(0, agent.welcome),
            lambda w: w is not None and w.resumed,
            what="the session resumed",
        )
        assert welcome is not None
        assert welcome.session_id == first.session_id
        assert set(agent.interactions) == {held.interaction_id}
        assert agent.reconnects >= 1
        assert agent.sessions_lost == 0

        # The resumed session finishes the old work and takes new.
        await agent.complete(held, outcome="resolved")
        await request(bots, "u-2")
        assert (await next_offer(agent)).details.customer_id == "u-2"
        watcher.cancel()
    finally:
        await agent.close()
        await bots.close()


async def test_a_network_cut_costs_the_session_nothing_and_a_long_one_costs_the_work(
    start_server: StartServer,
) -> None:
    server = await start_server(HUMANLINE_GRACE_PERIOD_SECONDS="2")
    proxy = TcpProxy(server.target)
    await proxy.admit()
    async with PoolClient(server.target, token=OPS) as pool:
        await pool.create_agent("di", skills={"billing": 4}, languages=["en"])
        agent = AgentClient("di", proxy.target, token=agent_token("di"), backoff=FAST)
        try:
            async with HandoffClient(server.target, token=BOT) as bots:
                first = await agent.connect()
                handoff = await request(bots)
                held = await agent.accept(await next_offer(agent))

                # A short cut: the client reconnects within the grace period and resumes.
                proxy.cut()
                await eventually(
                    lambda: asyncio.sleep(0, agent.welcome),
                    lambda w: w is not None and w.resumed and agent.connected,
                    what="the session resumed after the cut",
                )
                assert agent.session_id == first.session_id
                assert set(agent.interactions) == {held.interaction_id}

                # A long one: no way back before the grace period ends; the work is requeued.
                await proxy.refuse()
                proxy.cut()
                await eventually(
                    lambda: bots.get_handoff(handoff.handoff_id),
                    lambda h: h.state == handoff_pb2.HANDOFF_STATE_QUEUED,
                    what="the held handoff back in the queue",
                )
                await proxy.admit()
                await eventually(
                    lambda: asyncio.sleep(0, agent.sessions_lost),
                    lambda lost: lost == 1 and agent.connected,
                    what="a fresh log-in after the lost session",
                )
                assert agent.session_id != first.session_id
                assert agent.interactions == {}
                with pytest.raises(ApiError) as fenced:
                    await agent.complete(held)
                assert fenced.value.reason == "INTERACTION_REQUEUED"
                # The requeued handoff comes back to di, who is free again.
                assert (await next_offer(agent)).details.handoff_id == handoff.handoff_id
        finally:
            await agent.close()
            await proxy.close()


async def test_the_agent_client_gives_up_when_another_connection_takes_the_session(
    pool: PoolClient,
) -> None:
    await pool.create_agent("ed", skills={"billing": 4})
    first = AgentClient("ed", pool.target, token=agent_token("ed"), backoff=FAST)
    await first.connect()
    try:
        async with AgentClient("ed", pool.target, token=agent_token("ed")) as second:
            with pytest.raises(ApiError) as taken:
                await asyncio.wait_for(next_offer(first), READ)
            assert (taken.value.code, taken.value.reason) == (
                grpc.StatusCode.ABORTED,
                "SESSION_REPLACED",
            )
            assert not first.connected
            assert second.connected
            with pytest.raises(ApiError):
                await first.set_status("away")  # no stream, and none will come
    finally:
        await first.close()


async def test_heartbeats_keep_an_idle_session_open(start_server: StartServer) -> None:
    server = await start_server(HUMANLINE_HEARTBEAT_INTERVAL_SECONDS="0.5")
    async with PoolClient(server.target, token=OPS) as pool:
        await pool.create_agent("fay", skills={"billing": 4})
        async with AgentClient("fay", server.target, token=agent_token("fay")) as agent:
            await asyncio.sleep(4)  # several heartbeat timeouts of silence but for the beats
            assert agent.connected
            assert agent.reconnects == 0
            assert (await pool.get_agent("fay")).state == agent_pb2.AGENT_STATE_AVAILABLE
