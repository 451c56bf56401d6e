"""Killing and restarting the server in the middle of a queue loses nothing (DESIGN.md 4.2, 4.3).

A queue with handoffs in every state is built against the real server process, which is then
SIGKILLed (a crash: no goodbye) or SIGTERMed (graceful), and started again on the same SQLite
file. Every handoff must still be there: queued ones in the same order, the offered one back in
the queue at its old place, the assigned one still with its agent, who resumes the session with
its token and completes the work; a new eligible agent receives the queued ones in deadline
order. An agent that never comes back loses its work to the queue, not to the void.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from humanline.v1 import agent_pb2, handoff_pb2, handoff_service_pb2
from tests.e2e.helpers import (
    READ_TIMEOUT,
    agents,
    eventually,
    failure,
    next_of,
    pool_counts,
    queue,
    refused,
    stream_end,
    watch_end,
)
from tests.e2e.process import StartServer, channel, connect
from tests.support.client import AgentDriver, Stubs, handoff_request

pytestmark = pytest.mark.e2e

H = handoff_pb2

# Long enough that neither the pending offer nor bob's session expires while the server is
# down and restarting, even on a slow machine: this test is about the restart alone.
RESTART_SETTINGS = {
    "HUMANLINE_OFFER_TIMEOUT_SECONDS": "120",
    "HUMANLINE_GRACE_PERIOD_SECONDS": "120",
}

# Needs fraud_security; no agent has that skill until carol arrives after the restart.
FRAUD = {"interaction_type": "fraud_security", "skills": {"fraud": 3}}
BILLING = {"interaction_type": "billing_question", "skills": {"billing": 3}}


@dataclass
class Queue:
    """The handoffs of the scene by name, the requests that made them, and bob's session."""

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    handoffs: dict[str, handoff_pb2.Handoff] = field(default_factory=dict)
    bob: AgentDriver | None = None
    resume_token: str = ""
    session_id: str = ""
    interaction_id: str = ""  # bob's accepted, unfinished interaction ("assigned")

    async def request(self, stubs: Stubs, name: str, **fields: Any) -> handoff_pb2.Handoff:
        fields.setdefault("conversation_id", f"conv-{name}")
        self.requests[name] = fields
        self.handoffs[name] = await stubs.request_handoff(**fields)
        return self.handoffs[name]

    def id(self, name: str) -> str:
        return self.handoffs[name].handoff_id


async def build_queue(stubs: Stubs) -> Queue:
    """Handoffs in every state: four queued (nobody has the skill), one offered to bob, one
    assigned to bob, one completed, one cancelled."""
    scene = Queue()
    # Requested in this order; the deadlines order them critical, normal, normal-2, low.
    await scene.request(stubs, "queued-low", urgency=H.URGENCY_LOW, **FRAUD)
    await scene.request(stubs, "queued-normal", urgency=H.URGENCY_NORMAL, **FRAUD)
    await scene.request(stubs, "queued-critical", urgency=H.URGENCY_CRITICAL, **FRAUD)
    await scene.request(stubs, "queued-normal-2", urgency=H.URGENCY_NORMAL, **FRAUD)
    cancelled = await scene.request(stubs, "cancelled", urgency=H.URGENCY_LOW, **FRAUD)
    await stubs.cancel_handoff(cancelled.handoff_id)

    await stubs.create_agent("bob", {"billing": 4}, capacity=2, display_name="Bob")
    bob = scene.bob = stubs.agent("bob")
    welcome = await bob.hello()
    scene.resume_token, scene.session_id = welcome.resume_token, welcome.session_id

    await scene.request(stubs, "completed", urgency=H.URGENCY_NORMAL, **BILLING)
    offer = await next_of(bob, "offer")
    interaction = await bob.accept(offer.offer_id)
    await stubs.complete("bob", interaction.interaction_id, notes="done before the crash")

    assigned = await scene.request(stubs, "assigned", urgency=H.URGENCY_NORMAL, **BILLING)
    offer = await next_of(bob, "offer")
    assert offer.details.handoff_id == assigned.handoff_id
    scene.interaction_id = (await bob.accept(offer.offer_id)).interaction_id

    offered = await scene.request(stubs, "offered", urgency=H.URGENCY_HIGH, **BILLING)
    offer = await next_of(bob, "offer")  # bob's second slot; he does not answer it
    assert offer.details.handoff_id == offered.handoff_id

    for name in scene.handoffs:
        scene.handoffs[name] = await stubs.get_handoff(scene.id(name))
    return scene


WAITING_ORDER = ["queued-critical", "offered", "queued-normal", "queued-normal-2", "queued-low"]
CARE_ORDER = ["queued-critical", "queued-normal", "queued-normal-2", "queued-low"]


def check_before(scene: Queue) -> None:
    state = {name: H.HandoffState.Name(h.state) for name, h in scene.handoffs.items()}
    assert state == {
        "queued-low": "HANDOFF_STATE_QUEUED",
        "queued-normal": "HANDOFF_STATE_QUEUED",
        "queued-critical": "HANDOFF_STATE_QUEUED",
        "queued-normal-2": "HANDOFF_STATE_QUEUED",
        "cancelled": "HANDOFF_STATE_CANCELLED",
        "completed": "HANDOFF_STATE_COMPLETED",
        "assigned": "HANDOFF_STATE_ASSIGNED",
        "offered": "HANDOFF_STATE_OFFERED",
    }
    positions = [scene.handoffs[name].queue_position for name in WAITING_ORDER]
    assert positions == [1, 2, 3, 4, 5]


async def check_after(scene: Queue, stubs: Stubs) -> None:
    """Every handoff survived the restart in a sensible state, at its old place."""
    for name, before in scene.handoffs.items():
        after = await stubs.get_handoff(before.handoff_id)
        expected_state = H.HANDOFF_STATE_QUEUED if name == "offered" else before.state
        assert H.HandoffState.Name(after.state) == H.HandoffState.Name(expected_state), name
        assert after.queue_position == before.queue_position, name
        assert after.create_time == before.create_time, name
        assert after.target_time == before.target_time, name
        assert after.requeue_count == 0, name
        if name == "assigned":
            assert after.assigned_agent.agent_id == "bob"
            assert after.assign_time == before.assign_time
        if name == "completed":
            assert after.outcome == H.OUTCOME_RESOLVED

    bob = await stubs.get_agent("bob")
    assert (bob.state, bob.load) == (agent_pb2.AGENT_STATE_RECONNECTING, 1)
    pool = pool_counts(await stubs.pool_status())
    assert pool.agents == agents(RECONNECTING=1)
    assert pool.queue_by_urgency == queue(CRITICAL=1, HIGH=1, NORMAL=2, LOW=1)
    assert pool.queue_by_type == {"billing_question": 1, "fraud_security": 4}

    # The idempotency key survived too: a bot's retry gets the same handoff.
    retried = await stubs.request_handoff(
        request_id=scene.handoffs["queued-low"].request_id, **scene.requests["queued-low"]
    )
    assert retried.handoff_id == scene.id("queued-low")


async def finish_the_work(scene: Queue, stubs: Stubs) -> None:
    """Bob resumes and completes his work; carol takes the queue in deadline order."""
    bob = stubs.agent("bob")
    welcome = await bob.resume(scene.resume_token)
    assert welcome.resumed
    assert welcome.session_id == scene.session_id
    assert [i.interaction_id for i in welcome.active_interactions] == [scene.interaction_id]
    assert welcome.active_interactions[0].details.handoff_id == scene.id("assigned")

    # His free slot gets the handoff he had on offer before the restart.
    offer = await next_of(bob, "offer")
    assert offer.details.handoff_id == scene.id("offered")
    second = await bob.accept(offer.offer_id)
    for interaction_id in (scene.interaction_id, second.interaction_id):
        done = await stubs.complete("bob", interaction_id, notes="after the restart")
        assert done.outcome == H.OUTCOME_RESOLVED

    # A new agent who can take the fraud cases gets them earliest deadline first.
    await stubs.create_agent("carol", {"fraud": 5}, display_name="Carol")
    carol = stubs.agent("carol")
    await carol.hello()
    served = []
    for _ in CARE_ORDER:
        offer = await next_of(carol, "offer")
        served.append(offer.details.handoff_id)
        interaction = await carol.accept(offer.offer_id)
        await stubs.complete("carol", interaction.interaction_id)
    assert served == [scene.id(name) for name in CARE_ORDER]

    for name in scene.handoffs:
        final = await stubs.get_handoff(scene.id(name))
        expected = H.HANDOFF_STATE_CANCELLED if name == "cancelled" else H.HANDOFF_STATE_COMPLETED
        assert final.state == expected, name
    assert pool_counts(await stubs.pool_status()).waiting == 0
    bob.leave()
    carol.leave()


async def test_sigkill_and_restart_loses_nothing(start_server: StartServer) -> None:
    server = await start_server(**RESTART_SETTINGS)
    stubs = connect(server.target)
    try:
        scene = await build_queue(stubs)
        check_before(scene)
        assert scene.bob is not None

        assert await server.kill() == -9
        lost = await stream_end(scene.bob)
        assert lost.code == grpc.StatusCode.UNAVAILABLE
        scene.bob.leave()
    finally:
        await stubs.close()

    await server.start()
    stubs = connect(server.target)
    try:
        await check_after(scene, stubs)
        await finish_the_work(scene, stubs)
    finally:
        await stubs.close()
    events = [e["event"] for e in server.log_events()]
    assert "agent_disconnected" in events  # the new process noticed bob's dead stream


async def until_not_serving(call: grpc.aio.UnaryStreamCall) -> list[int]:
    """The statuses a grpc.health.v1 Watch sees until NOT_SERVING; then it hangs up (an open
    watch would hold the server for its whole shutdown grace)."""
    seen: list[int] = []
    try:
        while (message := await call.read()) is not grpc.aio.EOF:
            seen.append(message.status)
            if message.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
    except grpc.aio.AioRpcError:
        pass  # the server ended the call on its way out
    finally:
        call.cancel()
    return seen


async def test_sigterm_and_restart_loses_nothing(start_server: StartServer) -> None:
    server = await start_server(**RESTART_SETTINGS)
    stubs = connect(server.target)
    health_channel = channel(server.target)
    try:
        scene = await build_queue(stubs)
        check_before(scene)
        assert scene.bob is not None

        # A bot watching a queued handoff and a load balancer watching health.
        watch = stubs.handoffs.WatchHandoff(
            handoff_service_pb2.WatchHandoffRequest(handoff_id=scene.id("queued-low"))
        )
        first = await asyncio.wait_for(watch.read(), READ_TIMEOUT)
        assert first.handoff.state == H.HANDOFF_STATE_QUEUED
        health_call = health_pb2_grpc.HealthStub(health_channel).Watch(
            health_pb2.HealthCheckRequest()
        )
        serving = await asyncio.wait_for(health_call.read(), READ_TIMEOUT)
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
        health = asyncio.create_task(until_not_serving(health_call))

        assert await server.terminate() == 0
        assert server.forced_kills == 0

        statuses = await asyncio.wait_for(health, READ_TIMEOUT)
        assert statuses[-1:] == [health_pb2.HealthCheckResponse.NOT_SERVING]

        # Bob is told to move (his session kept until the grace deadline), then cut off.
        drain = await next_of(scene.bob, "drain")
        assert drain.HasField("resume_before")
        ended = await stream_end(scene.bob)
        assert (ended.code, ended.reason) == (grpc.StatusCode.UNAVAILABLE, "SERVER_DRAINING")
        scene.bob.leave()
        watch_ended = await watch_end(watch)
        assert (watch_ended.code, watch_ended.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "SERVER_SHUTTING_DOWN",
        )
    finally:
        await health_channel.close()
        await stubs.close()

    events = [e["event"] for e in server.log_events()]
    assert events[-1] == "service_stopped"

    await server.start()
    stubs = connect(server.target)
    try:
        await check_after(scene, stubs)
        await finish_the_work(scene, stubs)
    finally:
        await stubs.close()


async def test_agent_who_never_returns_loses_the_work_to_the_queue_not_the_void(
    start_server: StartServer,
) -> None:
    server = await start_server(HUMANLINE_GRACE_PERIOD_SECONDS="2")
    stubs = connect(server.target)
    try:
        await stubs.create_agent("bob", {"billing": 4}, display_name="Bob")
        bob = stubs.agent("bob")
        token = (await bob.hello()).resume_token
        handoff = await stubs.request_handoff(urgency=H.URGENCY_HIGH, **BILLING)
        offer = await next_of(bob, "offer")
        interaction = await bob.accept(offer.offer_id)
        await server.kill()
        await stream_end(bob)
        bob.leave()
    finally:
        await stubs.close()

    await server.start()
    stubs = connect(server.target)
    try:
        # Bob's grace period (2 s, from the restart) runs out: the work goes back to the queue.
        requeued = await eventually(
            lambda: stubs.get_handoff(handoff.handoff_id),
            lambda h: h.state == H.HANDOFF_STATE_QUEUED,
            what="the handoff back in the queue",
        )
        assert requeued.requeue_count == 1
        assert requeued.queue_position == 1
        gone = await stubs.get_agent("bob")
        assert (gone.state, gone.load) == (agent_pb2.AGENT_STATE_OFFLINE, 0)

        # Too late for bob: his token and his interaction id no longer work.
        late = stubs.agent("bob")
        with pytest.raises(grpc.aio.AioRpcError) as refused_resume:
            await late.resume(token)
        assert (failure(refused_resume.value).code, failure(refused_resume.value).reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "RESUME_TOKEN_INVALID",
        )
        late.leave()
        fenced = await refused(stubs.complete("bob", interaction.interaction_id))
        assert (fenced.code, fenced.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "INTERACTION_REQUEUED",
        )

        # Another agent gets it, knowing it was dropped once, and completes it.
        await stubs.create_agent("carol", {"billing": 3}, display_name="Carol")
        carol = stubs.agent("carol")
        await carol.hello()
        offer = await next_of(carol, "offer")
        assert offer.details.handoff_id == handoff.handoff_id
        assert offer.details.requeue_count == 1
        again = await carol.accept(offer.offer_id)
        await stubs.complete("carol", again.interaction_id)
        final = await stubs.get_handoff(handoff.handoff_id)
        assert final.state == H.HANDOFF_STATE_COMPLETED
        assert final.assigned_agent.agent_id == "carol"
        carol.leave()
    finally:
        await stubs.close()


async def test_every_acknowledged_handoff_survives_a_crash_under_load(
    start_server: StartServer,
) -> None:
    """Guarantee 4.2: a handoff is durable before RequestHandoff returns. Bots keep requesting
    while the server is SIGKILLed; after the restart every acknowledged handoff is there, and
    retrying the unacknowledged ones (same request id) creates each exactly once."""
    server = await start_server()
    attempted: dict[str, handoff_service_pb2.RequestHandoffRequest] = {}
    acked: dict[str, str] = {}
    errors: list[grpc.StatusCode] = []
    urgencies = itertools.cycle(
        [H.URGENCY_LOW, H.URGENCY_NORMAL, H.URGENCY_HIGH, H.URGENCY_CRITICAL]
    )

    async def bot(stubs: Stubs) -> None:
        while True:
            request = handoff_request(
                request_id=str(uuid.uuid4()), urgency=next(urgencies), **FRAUD
            )
            attempted[request.request_id] = request
            try:
                response = await stubs.handoffs.RequestHandoff(request, timeout=READ_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                errors.append(error.code())
                return
            acked[request.request_id] = response.handoff.handoff_id

    stubs = connect(server.target)
    try:
        bots = [asyncio.create_task(bot(stubs)) for _ in range(8)]
        await eventually(
            lambda: asyncio.sleep(0, len(acked)), lambda n: n >= 40, what="40 handoffs acknowledged"
        )
        await server.kill()
        await asyncio.wait_for(asyncio.gather(*bots), READ_TIMEOUT)
    finally:
        await stubs.close()
    assert errors
    assert set(errors) <= {grpc.StatusCode.UNAVAILABLE}, errors

    await server.start()
    stubs = connect(server.target)
    try:
        for request_id, handoff_id in acked.items():
            handoff = await stubs.get_handoff(handoff_id)
            assert handoff.state == H.HANDOFF_STATE_QUEUED
            assert handoff.request_id == request_id
        # The bots retry everything with the same request ids: acknowledged ones come back
        # unchanged, the others are created now, once each.
        retried = {}
        for request_id, request in attempted.items():
            retried[request_id] = (await stubs.handoffs.RequestHandoff(request)).handoff.handoff_id
        assert {rid: retried[rid] for rid in acked} == acked
        assert len(set(retried.values())) == len(attempted)
        assert pool_counts(await stubs.pool_status()).waiting == len(attempted)
    finally:
        await stubs.close()
