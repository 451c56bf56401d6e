"""Presence as a lease: drops, the grace period, resume, take-over, log-out, heartbeats."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from humanline.domain.model import (
    AgentStatus,
    DeclineReason,
    RescindReason,
    StatusChangeReason,
)
from humanline.domain.rules import DispatchPolicy
from humanline.service.events import (
    Effects,
    OfferMade,
    OfferWithdrawn,
    Reconcile,
    StatusUpdated,
    StreamClosing,
)
from humanline.v1 import agent_pb2, agent_service_pb2, handoff_pb2
from tests.conftest import FAST, Served, serve
from tests.support.client import ConnectRequest, Stubs, error_details


async def wait_for_state(client: Stubs, agent_id: str, state: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while (await client.get_agent(agent_id)).state != state:
            await asyncio.sleep(0.05)


async def test_drop_and_resume_within_grace_keeps_session_and_accepted_work(
    client: Stubs,
) -> None:
    await client.create_agent("ann", {"general": 3}, capacity=2)
    ann = client.agent("ann")
    first = await ann.hello()
    kept = await client.request_handoff()
    interaction = await ann.accept((await ann.offer()).offer_id)
    pending_handoff = await client.request_handoff()
    pending = await ann.offer()
    assert pending.details.handoff_id == pending_handoff.handoff_id

    ann.drop()
    await wait_for_state(client, "ann", agent_pb2.AGENT_STATE_RECONNECTING)
    # The pending offer went back to the queue at once; the accepted one stays assigned.
    returned = await client.get_handoff(pending_handoff.handoff_id)
    assert returned.state == handoff_pb2.HANDOFF_STATE_QUEUED
    assert (await client.get_handoff(kept.handoff_id)).state == handoff_pb2.HANDOFF_STATE_ASSIGNED

    again = await ann.resume(first.resume_token)
    assert again.resumed
    assert again.session_id == first.session_id
    assert [i.interaction_id for i in again.active_interactions] == [interaction.interaction_id]
    # Back online: the returned handoff is offered again, and the work can be completed.
    assert (await ann.offer()).details.handoff_id == pending_handoff.handoff_id
    await client.complete("ann", interaction.interaction_id)
    assert (await client.get_handoff(kept.handoff_id)).state == handoff_pb2.HANDOFF_STATE_COMPLETED


async def test_drop_beyond_grace_requeues_accepted_work_ahead_of_newer_handoffs(
    client: Stubs,
) -> None:
    await client.create_agent("bob", {"general": 3})
    bob = client.agent("bob")
    await bob.hello()
    held = await client.request_handoff(urgency=handoff_pb2.URGENCY_LOW)
    interaction = await bob.accept((await bob.offer()).offer_id)
    bob.drop()
    await wait_for_state(client, "bob", agent_pb2.AGENT_STATE_OFFLINE, timeout=10)

    requeued = await client.get_handoff(held.handoff_id)
    assert requeued.state == handoff_pb2.HANDOFF_STATE_QUEUED
    assert requeued.requeue_count == 1
    assert not requeued.HasField("assigned_agent")
    # Its maximum wait (the fallback policy's 15 minutes) starts again from the re-queue.
    assert requeued.expire_time.ToDatetime() > held.expire_time.ToDatetime()
    left = requeued.expire_time.ToDatetime() - datetime.now(UTC).replace(tzinfo=None)
    assert left.total_seconds() == pytest.approx(900, abs=5)
    # A CRITICAL handoff queued after the re-queue still comes second: the re-queued one is due.
    newer = await client.request_handoff(urgency=handoff_pb2.URGENCY_CRITICAL)
    assert (await client.get_handoff(newer.handoff_id)).queue_position == 2
    assert (await client.get_handoff(held.handoff_id)).queue_position == 1

    # The late agent cannot complete what it lost; a new agent gets it first.
    with pytest.raises(grpc.aio.AioRpcError) as lost:
        await client.complete("bob", interaction.interaction_id)
    assert lost.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(lost.value)["reason"] == "INTERACTION_REQUEUED"
    await client.create_agent("cid", {"general": 3})
    cid = client.agent("cid")
    await cid.hello()
    offer = await cid.offer()
    assert offer.details.handoff_id == held.handoff_id
    assert offer.details.requeue_count == 1


async def test_resume_after_grace_is_refused_and_hello_starts_over(client: Stubs) -> None:
    await client.create_agent("dee", {"general": 3})
    dee = client.agent("dee")
    welcome = await dee.hello()
    dee.drop()
    await wait_for_state(client, "dee", agent_pb2.AGENT_STATE_OFFLINE, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dee.resume(welcome.resume_token)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused.value)["reason"] == "RESUME_TOKEN_INVALID"
    fresh = client.agent("dee")
    assert not (await fresh.hello()).resumed


async def test_resume_with_a_wrong_token_or_agent_is_refused(client: Stubs) -> None:
    await client.create_agent("eli", {"general": 3})
    await client.create_agent("fox", {"general": 3})
    eli = client.agent("eli")
    welcome = await eli.hello()
    for agent_id, token in (("eli", "forged-token"), ("fox", welcome.resume_token)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.agent(agent_id).resume(token)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_cancelled_call_whose_requests_ended_first_is_a_drop(client: Stubs) -> None:
    # A cancelled call ends its requests on the server as a log-out does, and grpc cancels
    # the handler only just after: here the app closes its side and the call is cancelled
    # a moment later, as a slow server sees a cancellation. It is a drop, not a log-out.
    await client.create_agent("gus", {"general": 3})
    gus = client.agent("gus")
    await gus.hello()
    gus.leave()
    await asyncio.sleep(0.02)
    gus.drop()
    await wait_for_state(client, "gus", agent_pb2.AGENT_STATE_RECONNECTING, timeout=2)
    await asyncio.sleep(0.5)  # and it stays so
    assert (await client.get_agent("gus")).state == agent_pb2.AGENT_STATE_RECONNECTING


# Offers outlive any test here: one that never reaches the stream would sit unseen until then.
SLOW_OFFERS = replace(FAST, offer_timeout=timedelta(seconds=30))


# A log-in or resume commits its session, then attaches its stream to the hub. An offer made
# in between (here by a bot's RequestHandoff, which offers to a free agent in its own
# transaction; on PostgreSQL also by another replica, whose hint finds no stream) was
# announced to nobody, and the change feed skips the agent, whose last write was the log-in's
# own: it sat unseen until it expired, the customer waiting and the agent charged a miss.
@pytest.mark.parametrize("policy", [SLOW_OFFERS], ids=["slow-offers"])
@pytest.mark.parametrize("how", ["hello", "resume"])
async def test_an_offer_made_as_the_stream_attaches_reaches_it(
    served: Served, client: Stubs, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    await client.create_agent("kim", {"general": 3})
    kim = client.agent("kim")
    if how == "resume":
        first = await kim.hello()
        kim.drop()
        await wait_for_state(client, "kim", agent_pb2.AGENT_STATE_RECONNECTING)
    sessions = served.app.sessions
    step = "_reopen" if how == "resume" else "_log_in"
    committed = getattr(sessions, step)
    asked: list[handoff_pb2.Handoff] = []

    async def a_bot_asks_in_between(*args: Any) -> Any:
        connection = await committed(*args)
        asked.append(await client.request_handoff())  # the stream is not attached yet
        return connection

    monkeypatch.setattr(sessions, step, a_bot_asks_in_between)
    if how == "resume":
        assert (await kim.resume(first.resume_token)).resumed
    else:
        await kim.hello()
    assert asked[0].state == handoff_pb2.HANDOFF_STATE_OFFERED
    offer = await kim.offer()
    assert offer.details.handoff_id == asked[0].handoff_id
    assert (await kim.quiet(0.3)) == []  # shown once


# Found by the three-replica runs: a hint made the stream compare itself with the store just
# as the agent's decline committed; the comparison found the offer gone and announced it, and
# the decline's own answer (already queued behind it) announced it again.
async def test_a_declined_offer_is_announced_once_by_the_answer(
    served: Served, client: Stubs
) -> None:
    await client.create_agent("lou", {"general": 3})
    sessions = served.app.sessions
    channel = (await sessions.connect("lou", AgentStatus.AVAILABLE)).channel  # no grpc
    await client.request_handoff()
    made: OfferMade | None = None
    while made is None:
        event = await asyncio.wait_for(channel.get(), timeout=5)
        events = await sessions.reconcile(channel) if isinstance(event, Reconcile) else [event]
        for event in events:
            if channel.admit(event) and isinstance(event, OfferMade):
                made = event
    await sessions.decline("lou", made.offer.id, DeclineReason.BUSY, "cmd-1")
    compared = await sessions.reconcile(channel)  # a hint's look, ahead of the answer
    assert not [e for e in compared if isinstance(e, OfferWithdrawn)]
    answer = await asyncio.wait_for(channel.get(), timeout=5)
    while not channel.admit(answer):  # the offer's own event, after the look that showed it
        answer = await asyncio.wait_for(channel.get(), timeout=5)
    assert answer == OfferWithdrawn(made.offer.id, RescindReason.DECLINED, "cmd-1")
    sessions.dropped(channel, clean=True)


# Found by the three-replica drain run: two transactions publish in the order they come back
# from their commits, not in the commits' order; the offer's news came after its rescind, and
# the stream showed it again (then took it back a second time).
async def test_an_offer_taken_back_before_its_news_arrives_is_never_shown(
    served: Served, client: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.create_agent("nia", {"general": 3})
    sessions, dispatcher = served.app.sessions, served.app.dispatcher
    channel = (await sessions.connect("nia", AgentStatus.AVAILABLE)).channel  # no grpc
    publish = dispatcher.apply
    late: list[Effects] = []

    def slow_to_publish_offers(fx: Effects) -> None:
        if any(isinstance(event, OfferMade) for _, event, _ in fx.agent_events):
            late.append(fx)
        else:
            publish(fx)

    monkeypatch.setattr(dispatcher, "apply", slow_to_publish_offers)
    await client.request_handoff()
    async with asyncio.timeout(5):
        while not late:
            await asyncio.sleep(0.01)
    await sessions.set_status("nia", AgentStatus.AWAY, "cmd-1")  # rescinds it, published
    publish(late[0])  # the offer's own news, last
    told = []
    marker = StreamClosing("end of test")  # everything queued so far comes before it
    channel.put(marker)
    while (event := await asyncio.wait_for(channel.get(), timeout=5)) is not marker:
        events = await sessions.reconcile(channel) if isinstance(event, Reconcile) else [event]
        told += [e for e in events if channel.admit(e)]
    assert not [e for e in told if isinstance(e, OfferMade | OfferWithdrawn)], told
    assert told == [StatusUpdated(AgentStatus.AWAY, StatusChangeReason.AGENT_REQUEST, "cmd-1")]
    sessions.dropped(channel, clean=True)


# Found by CI: the comparison queued at log-in read the store just after the agent's first
# command set it away; it announced the change, and so did the command's answer behind it.
async def test_a_status_the_agent_asked_for_is_announced_once_by_the_answer(
    served: Served, client: Stubs
) -> None:
    await client.create_agent("mo", {"general": 3})
    sessions = served.app.sessions
    channel = (await sessions.connect("mo", AgentStatus.AVAILABLE)).channel  # no grpc
    assert isinstance(await asyncio.wait_for(channel.get(), timeout=5), Reconcile)
    await sessions.set_status("mo", AgentStatus.AWAY, "cmd-1")
    compared = await sessions.reconcile(channel)  # the log-in's look, ahead of the answer
    assert not [e for e in compared if channel.admit(e)]
    answer = await asyncio.wait_for(channel.get(), timeout=5)
    assert channel.admit(answer)
    assert answer == StatusUpdated(AgentStatus.AWAY, StatusChangeReason.AGENT_REQUEST, "cmd-1")
    sessions.dropped(channel, clean=True)


async def test_clean_log_out_without_work_goes_offline_at_once(client: Stubs) -> None:
    await client.create_agent("gil", {"general": 3})
    gil = client.agent("gil")
    await gil.hello()
    gil.leave()
    await wait_for_state(client, "gil", agent_pb2.AGENT_STATE_OFFLINE, timeout=2)


async def test_log_out_with_accepted_work_keeps_it_through_the_grace_period(
    client: Stubs,
) -> None:
    await client.create_agent("hal", {"general": 3})
    hal = client.agent("hal")
    await hal.hello()
    handoff = await client.request_handoff()
    interaction = await hal.accept((await hal.offer()).offer_id)
    hal.leave()
    await wait_for_state(client, "hal", agent_pb2.AGENT_STATE_RECONNECTING)
    # Completing over the unary call still works within the grace period.
    await client.complete("hal", interaction.interaction_id)
    assert (await client.get_handoff(handoff.handoff_id)).state == (
        handoff_pb2.HANDOFF_STATE_COMPLETED
    )


async def test_second_hello_takes_the_session_over(client: Stubs) -> None:
    await client.create_agent("ida", {"general": 3}, capacity=2)
    old = client.agent("ida")
    first = await old.hello()
    handoff = await client.request_handoff()
    interaction = await old.accept((await old.offer()).offer_id)
    await client.request_handoff()
    pending = await old.offer()

    new = client.agent("ida")
    second = await new.hello()
    assert second.session_id != first.session_id
    # The older stream learns its pending offer is gone, then ends with ABORTED.
    rescinded = await old.expect("offer_rescinded")
    assert rescinded.offer_id == pending.offer_id
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await old.next()
    assert ended.value.code() == grpc.StatusCode.ABORTED
    assert error_details(ended.value)["reason"] == "SESSION_REPLACED"
    # The agent's accepted work moved with it, and the old token no longer resumes.
    assert [i.interaction_id for i in second.active_interactions] == [interaction.interaction_id]
    with pytest.raises(grpc.aio.AioRpcError):
        await client.agent("ida").resume(first.resume_token)
    await client.complete("ida", interaction.interaction_id)
    assert (await client.get_handoff(handoff.handoff_id)).state == (
        handoff_pb2.HANDOFF_STATE_COMPLETED
    )


async def test_first_message_must_be_hello_or_resume(client: Stubs) -> None:
    driver = client.agent("nobody")
    driver._open()
    driver.send(heartbeat=ConnectRequest.Heartbeat())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await driver.next()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_hello_for_an_unknown_agent_is_not_found(client: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.agent("ghost").hello()
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(refused.value)["reason"] == "AGENT_NOT_FOUND"


async def test_away_agents_get_no_offers_and_going_away_rescinds_pending(client: Stubs) -> None:
    await client.create_agent("jay", {"general": 3})
    jay = client.agent("jay")
    await jay.hello(status=agent_pb2.AGENT_STATUS_AWAY)
    handoff = await client.request_handoff()
    assert await jay.quiet(0.5) == []
    await jay.set_status(agent_pb2.AGENT_STATUS_AVAILABLE)
    offer = await jay.offer()
    assert offer.details.handoff_id == handoff.handoff_id
    command_id = jay.send(set_status=ConnectRequest.SetStatus(status=agent_pb2.AGENT_STATUS_AWAY))
    rescinded = await jay.next()  # the pending offer goes first, then the confirmation
    assert rescinded.offer_rescinded.offer_id == offer.offer_id
    assert rescinded.offer_rescinded.reason == agent_service_pb2.RESCIND_REASON_AGENT_AWAY
    confirmed = await jay.next()
    assert confirmed.command_id == command_id
    assert confirmed.status_changed.status == agent_pb2.AGENT_STATUS_AWAY
    assert (await client.get_handoff(handoff.handoff_id)).state == handoff_pb2.HANDOFF_STATE_QUEUED


# --- heartbeats: a module of its own timing --------------------------------------------------

HEARTBEATS = DispatchPolicy(
    offer_timeout=FAST.offer_timeout,
    grace_period=timedelta(seconds=2),
    heartbeat_interval=timedelta(seconds=0.3),
)


@pytest.fixture
async def heartbeat_served(db_url: str) -> Served:
    s = await serve(db_url, HEARTBEATS)
    yield s  # type: ignore[misc]
    async with asyncio.timeout(15):
        await s.stop()


async def test_missed_heartbeats_end_the_stream_like_a_drop(heartbeat_served: Served) -> None:
    client = heartbeat_served.stubs()
    try:
        await client.create_agent("kim", {"general": 3})
        await client.create_agent("lou", {"general": 3})
        silent, beating = client.agent("kim"), client.agent("lou")
        await silent.hello()
        await beating.hello(heartbeat_every=0.1)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await silent.next(timeout=5)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await wait_for_state(client, "kim", agent_pb2.AGENT_STATE_RECONNECTING)
        await asyncio.sleep(1.0)
        assert (await client.get_agent("lou")).state == agent_pb2.AGENT_STATE_AVAILABLE
        beating.leave()
    finally:
        await client.close()
