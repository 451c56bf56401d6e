"""In-process event routing (humanline.service.events) without a database: agent channels
and their replacement, session-targeted delivery, handoff watches and queue movement,
shutdown, waiting for agent streams to go, and the Effects a transaction collects."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from humanline.domain.model import AgentStatus, HandoffState, RescindReason, StatusChangeReason
from humanline.service.events import (
    CLOSE_REPLACED,
    CLOSE_SHUTDOWN,
    ENDED_MEMORY,
    AgentChannel,
    AssignmentMade,
    Effects,
    EventHub,
    HeartbeatAck,
    OfferMade,
    OfferWithdrawn,
    Reconcile,
    ServiceClosing,
    StatusUpdated,
    StreamClosing,
)
from tests.unit.builders import OFFER_ID, T0, at, completed_interaction, handoff, offer

TICK = 0.01  # a watch's check interval in these tests


def ack(n: int = 0) -> HeartbeatAck:
    return HeartbeatAck(at(n), f"cmd-{n}")


async def next_event(channel: AgentChannel) -> object:
    return await asyncio.wait_for(channel.get(), timeout=1)


async def assert_nothing_queued(channel: AgentChannel) -> None:
    """Nothing is queued ahead of a marker put now."""
    marker = ack(999)
    channel.put(marker)
    assert await next_event(channel) is marker


# --- AgentChannel -------------------------------------------------------------------------------


async def test_channel_delivers_in_order() -> None:
    ch = AgentChannel("ada", "s1")
    events = [ack(1), OfferWithdrawn(OFFER_ID, RescindReason.EXPIRED), ack(2)]
    for e in events:
        ch.put(e)
    assert [await next_event(ch) for _ in events] == events


async def test_channel_close_queues_stream_closing() -> None:
    ch = AgentChannel("ada", "s1")
    ch.put(ack(1))
    ch.close("heartbeat_timeout")
    assert await next_event(ch) == ack(1)
    assert await next_event(ch) == StreamClosing("heartbeat_timeout")


async def test_a_waiting_reconcile_covers_the_hints_behind_it() -> None:
    # Each hint asks for a look at the store; while one look waits in the queue, it covers
    # every hint that arrives before it starts. Once it has started, a hint needs a new one.
    ch = AgentChannel("ada", "s1")
    ch.put(Reconcile())
    ch.put(ack(1))
    ch.put(Reconcile())
    ch.put(Reconcile())
    assert await next_event(ch) == Reconcile()
    ch.put(Reconcile())  # arrived while the first look reads the store
    assert await next_event(ch) == ack(1)
    assert await next_event(ch) == Reconcile()
    await assert_nothing_queued(ch)


def test_channels_get_distinct_connection_ids() -> None:
    a, b = AgentChannel("ada", "s1"), AgentChannel("ada", "s1")
    assert a.connection_id != b.connection_id
    assert (a.agent_id, a.session_id) == ("ada", "s1")


# --- attach / detach ----------------------------------------------------------------------------


async def test_attach_makes_the_channel_current() -> None:
    hub = EventHub()
    ch = AgentChannel("ada", "s1")
    hub.attach(ch)
    assert hub.is_current(ch)
    assert hub.agent_streams == 1
    assert hub.to_agent("ada", ack(1))
    assert await next_event(ch) == ack(1)


async def test_attach_replaces_and_closes_the_older_channel() -> None:
    hub = EventHub()
    old, new = AgentChannel("ada", "s1"), AgentChannel("ada", "s2")
    hub.attach(old)
    hub.attach(new)
    assert await next_event(old) == StreamClosing(CLOSE_REPLACED)
    assert not hub.is_current(old)
    assert hub.is_current(new)
    assert hub.agent_streams == 1
    # Events now go to the new channel only.
    assert hub.to_agent("ada", ack(1))
    assert await next_event(new) == ack(1)
    await assert_nothing_queued(old)


async def test_attach_again_of_the_same_channel_does_not_close_it() -> None:
    hub = EventHub()
    ch = AgentChannel("ada", "s1")
    hub.attach(ch)
    hub.attach(ch)
    assert hub.is_current(ch)
    await assert_nothing_queued(ch)


async def test_attach_leaves_other_agents_alone() -> None:
    hub = EventHub()
    ada, bob = AgentChannel("ada", "s1"), AgentChannel("bob", "s2")
    hub.attach(ada)
    hub.attach(bob)
    assert hub.is_current(ada)
    assert hub.is_current(bob)
    assert hub.agent_streams == 2
    await assert_nothing_queued(ada)


def test_detach_removes_the_current_channel() -> None:
    hub = EventHub()
    ch = AgentChannel("ada", "s1")
    hub.attach(ch)
    assert hub.detach(ch) is True
    assert not hub.is_current(ch)
    assert hub.agent_streams == 0
    assert hub.to_agent("ada", ack(1)) is False
    assert hub.detach(ch) is False  # only once


async def test_detach_of_a_replaced_channel_keeps_the_newer_one() -> None:
    hub = EventHub()
    old, new = AgentChannel("ada", "s1"), AgentChannel("ada", "s1")
    hub.attach(old)
    hub.attach(new)
    assert hub.detach(old) is False
    assert hub.is_current(new)
    assert hub.to_agent("ada", ack(1))
    assert await next_event(new) == ack(1)


def test_detach_of_a_never_attached_channel() -> None:
    hub = EventHub()
    hub.attach(AgentChannel("ada", "s1"))
    assert hub.detach(AgentChannel("ada", "s1")) is False
    assert hub.agent_streams == 1


# --- to_agent and close_session -----------------------------------------------------------------


async def test_to_agent_targets_a_session() -> None:
    hub = EventHub()
    ch = AgentChannel("ada", "s1")
    hub.attach(ch)
    assert hub.to_agent("ada", ack(1), session_id="s2") is False
    assert hub.to_agent("ada", ack(2), session_id="s1") is True
    assert hub.to_agent("ada", ack(3)) is True
    assert await next_event(ch) == ack(2)
    assert await next_event(ch) == ack(3)


def test_to_agent_without_a_stream() -> None:
    hub = EventHub()
    hub.attach(AgentChannel("ada", "s1"))
    assert hub.to_agent("bob", ack(1)) is False
    assert hub.to_agent("bob", ack(1), session_id="s1") is False


async def test_close_session_closes_only_that_session() -> None:
    hub = EventHub()
    ch = AgentChannel("ada", "s1")
    hub.attach(ch)
    hub.close_session("ada", "s-other", "replaced")
    hub.close_session("bob", "s1", "replaced")
    await assert_nothing_queued(ch)
    hub.close_session("ada", "s1", "heartbeat_timeout")
    assert await next_event(ch) == StreamClosing("heartbeat_timeout")


# --- agents_gone --------------------------------------------------------------------------------


async def test_agents_gone_at_once_without_streams() -> None:
    await asyncio.wait_for(EventHub().agents_gone(), timeout=1)


async def test_agents_gone_waits_for_the_last_current_stream() -> None:
    hub = EventHub()
    ada_old, ada_new, bob = (
        AgentChannel("ada", "s1"),
        AgentChannel("ada", "s2"),
        AgentChannel("bob", "s3"),
    )
    hub.attach(ada_old)
    hub.attach(ada_new)
    hub.attach(bob)
    gone = asyncio.create_task(hub.agents_gone())
    try:
        await asyncio.sleep(TICK)
        assert not gone.done()
        hub.detach(ada_old)  # replaced: not the current stream, changes nothing
        hub.detach(bob)
        await asyncio.sleep(TICK)
        assert not gone.done()
        hub.detach(ada_new)
        await asyncio.wait_for(gone, timeout=1)
    finally:
        gone.cancel()


async def test_agents_gone_waits_again_after_a_new_attach() -> None:
    hub = EventHub()
    ch = AgentChannel("ada", "s1")
    hub.attach(ch)
    hub.detach(ch)
    await asyncio.wait_for(hub.agents_gone(), timeout=1)
    hub.attach(ch)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(hub.agents_gone(), timeout=TICK)


# --- handoff watches ----------------------------------------------------------------------------


async def test_watch_receives_snapshots_in_order() -> None:
    hub = EventHub()
    h = handoff()
    offered = dataclasses.replace(h, state=HandoffState.OFFERED)
    with hub.watch(h.id) as watch:
        assert watch.handoff_id == h.id
        hub.handoff_changed(h)
        hub.handoff_changed(offered)
        assert await watch.next(TICK) == h
        assert await watch.next(TICK) == offered


async def test_watch_wakes_on_a_snapshot_without_waiting_for_its_interval() -> None:
    hub = EventHub()
    h = handoff()
    with hub.watch(h.id) as watch:
        waiting = asyncio.create_task(watch.next(60))
        await asyncio.sleep(0)
        hub.handoff_changed(h)
        assert await asyncio.wait_for(waiting, timeout=1) == h


async def test_every_watcher_of_a_handoff_gets_its_snapshots_and_only_those() -> None:
    hub = EventHub()
    mine = handoff("h-mine")
    other = handoff("h-other")
    with hub.watch("h-mine") as w1, hub.watch("h-mine") as w2, hub.watch("h-other") as w3:
        hub.handoff_changed(mine)
        assert await w1.next(TICK) == mine
        assert await w2.next(TICK) == mine
        hub.handoff_changed(other)
        assert await w3.next(TICK) == other
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(w1.next(TICK), timeout=5 * TICK)


async def test_queue_movement_wakes_a_watch_with_none_once() -> None:
    hub = EventHub()
    with hub.watch("h1") as watch:
        hub.queue_moved()
        hub.queue_moved()  # several moves between checks count as one
        assert await watch.next(TICK) is None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watch.next(TICK), timeout=5 * TICK)
        hub.queue_moved()
        assert await watch.next(TICK) is None


async def test_watch_ignores_moves_before_it_started() -> None:
    hub = EventHub()
    hub.queue_moved()
    with hub.watch("h1") as watch, pytest.raises(TimeoutError):
        await asyncio.wait_for(watch.next(TICK), timeout=5 * TICK)


async def test_snapshots_come_before_queue_movement() -> None:
    hub = EventHub()
    h = handoff()
    with hub.watch(h.id) as watch:
        hub.queue_moved()
        hub.handoff_changed(h)
        assert await watch.next(TICK) == h
        assert await watch.next(TICK) is None


async def test_a_finished_watch_receives_nothing() -> None:
    hub = EventHub()
    h = handoff()
    with hub.watch(h.id) as watch:
        pass
    hub.handoff_changed(h)
    hub.queue_moved()
    # The snapshot did not reach it; only the (shared) queue version is seen.
    assert await watch.next(TICK) is None


async def test_leaving_one_watch_keeps_the_others() -> None:
    hub = EventHub()
    h = handoff()
    with hub.watch(h.id) as staying:
        with hub.watch(h.id):
            pass
        hub.handoff_changed(h)
        assert await staying.next(TICK) == h


# --- shutdown -----------------------------------------------------------------------------------


async def test_shutdown_closes_every_agent_stream() -> None:
    hub = EventHub()
    ada, bob = AgentChannel("ada", "s1"), AgentChannel("bob", "s2")
    hub.attach(ada)
    hub.attach(bob)
    hub.shutdown()
    assert hub.closing
    assert await next_event(ada) == StreamClosing(CLOSE_SHUTDOWN)
    assert await next_event(bob) == StreamClosing(CLOSE_SHUTDOWN)


async def test_shutdown_ends_watches_within_their_interval() -> None:
    hub = EventHub()
    with hub.watch("h1") as watch:
        waiting = asyncio.create_task(watch.next(TICK))
        await asyncio.sleep(0)
        hub.shutdown()
        with pytest.raises(ServiceClosing):
            await asyncio.wait_for(waiting, timeout=1)
        with pytest.raises(ServiceClosing):
            await watch.next(TICK)


async def test_shutdown_wins_over_queue_movement() -> None:
    hub = EventHub()
    with hub.watch("h1") as watch:
        hub.queue_moved()
        hub.shutdown()
        with pytest.raises(ServiceClosing):
            await watch.next(TICK)


async def test_snapshots_already_delivered_are_read_before_shutdown_ends_the_watch() -> None:
    hub = EventHub()
    h = handoff()
    with hub.watch(h.id) as watch:
        hub.handoff_changed(h)
        hub.shutdown()
        assert await watch.next(TICK) == h
        with pytest.raises(ServiceClosing):
            await watch.next(TICK)


async def test_a_stream_attached_after_shutdown_is_closed_too() -> None:
    # Regression: EventHub.attach once ignored `closing`: a log-in whose transaction was in
    # flight at shutdown attached afterwards, was never told to end, and held the shutdown
    # for the whole grace period. Handoff watches opened
    # after shutdown do end (HandoffWatch.next checks `closing`); agent streams should too.
    hub = EventHub()
    hub.shutdown()
    late = AgentChannel("ada", "s1")
    hub.attach(late)
    late.put(ack(1))  # so that a missing StreamClosing shows at once, not as a timeout
    assert await next_event(late) == StreamClosing(CLOSE_SHUTDOWN)


# --- Effects ------------------------------------------------------------------------------------


def test_effects_start_empty() -> None:
    fx = Effects()
    assert fx.agent_events == []
    assert fx.closed_sessions == []
    assert fx.handoffs == []
    assert fx.queue_moved is False
    assert fx.match_handoffs == fx.match_agents == []
    assert fx.wake_at == []
    assert fx.logs == []


def test_effects_collect_in_order() -> None:
    fx = Effects()
    status = StatusUpdated(AgentStatus.AWAY, StatusChangeReason.MISSED_OFFERS)
    fx.to_agent("ada", ack(1))
    fx.to_agent("ada", status, session_id="s1")
    fx.close_session("bob", "s2", "replaced")
    fx.match_handoff("h1")
    fx.match_handoff("h2")
    fx.match_agent("ada")
    fx.wake(at(15))
    fx.wake(at(5))
    fx.log("offer_made", offer_id=OFFER_ID, agent_id="ada")
    assert fx.agent_events == [("ada", ack(1), None), ("ada", status, "s1")]
    assert fx.closed_sessions == [("bob", "s2", "replaced")]
    assert fx.match_handoffs == ["h1", "h2"]
    assert fx.match_agents == ["ada"]
    assert fx.wake_at == [at(15), at(5)]
    assert fx.logs == [("offer_made", {"offer_id": OFFER_ID, "agent_id": "ada"})]


def test_effects_queue_moved_sticks_once_set() -> None:
    fx = Effects()
    h1, h2, h3 = handoff("h1"), handoff("h2", created_at=T0), handoff("h3")
    fx.changed(h1)
    assert fx.queue_moved is False
    fx.changed(h2, moved=True)
    fx.changed(h3)
    assert fx.queue_moved is True
    assert fx.handoffs == [h1, h2, h3]


def test_effects_are_independent() -> None:
    a, b = Effects(), Effects()
    a.match_agent("ada")
    assert b.match_agents == []


# --- what a stream has said, and hints between replicas ------------------------------------


def test_admit_sends_each_offer_once_and_withdrawals_only_of_shown_offers() -> None:
    channel = AgentChannel("ada", "s1")
    made = OfferMade(offer(), handoff())
    assert channel.admit(made)
    assert not channel.admit(made)  # heard again through a hint: not sent twice
    assert not channel.admit(OfferWithdrawn("never-shown", RescindReason.EXPIRED))
    assert channel.admit(OfferWithdrawn(OFFER_ID, RescindReason.EXPIRED))
    assert not channel.admit(OfferWithdrawn(OFFER_ID, RescindReason.EXPIRED))
    # An answer to a command always goes out, shown or not.
    assert channel.admit(OfferWithdrawn("never-shown", RescindReason.DECLINED, "cmd-1"))


def test_admit_sends_a_status_only_when_it_changes_unless_asked() -> None:
    channel = AgentChannel("ada", "s1")
    channel.status = AgentStatus.AVAILABLE
    assert not channel.admit(StatusUpdated(AgentStatus.AVAILABLE, StatusChangeReason.AGENT_REQUEST))
    assert channel.admit(StatusUpdated(AgentStatus.AWAY, StatusChangeReason.MISSED_OFFERS))
    assert channel.status is AgentStatus.AWAY
    assert channel.admit(StatusUpdated(AgentStatus.AWAY, StatusChangeReason.AGENT_REQUEST, "cmd-2"))


# Found by the three-replica drain run: an offer's news came after the news of its end (two
# transactions publish in the order they resume from their commits, not the commits' order),
# and the offer was shown again, then taken back a second time.
def test_an_offer_whose_end_was_heard_is_never_shown_again() -> None:
    channel = AgentChannel("ada", "s1")
    made = OfferMade(offer(), handoff())
    assert channel.admit(made)
    assert channel.admit(OfferWithdrawn(OFFER_ID, RescindReason.AGENT_AWAY))
    assert not channel.admit(made)  # late: from a look that began before the rescind
    # Its end heard before its news: the news is dropped, and so is the end (never shown).
    late = OfferMade(offer("late"), handoff())
    assert not channel.admit(OfferWithdrawn("late", RescindReason.AGENT_AWAY))
    assert not channel.admit(late)
    # Accepted: it is work now, not an offer.
    taken = completed_interaction(accepted=at(1), ended=at(2))
    channel.admit(AssignmentMade(taken))
    assert not channel.admit(OfferMade(taken.offer, handoff()))
    assert channel.shown_offers == set()


def test_a_stream_remembers_a_bounded_number_of_ended_offers() -> None:
    channel = AgentChannel("ada", "s1")
    for i in range(ENDED_MEMORY + 1):
        channel.admit(OfferWithdrawn(f"o{i}", RescindReason.EXPIRED))
    assert not channel.admit(OfferMade(offer(f"o{ENDED_MEMORY}"), handoff()))
    assert channel.admit(OfferMade(offer("o0"), handoff()))  # forgotten: the oldest


def test_an_accepted_offer_is_no_longer_shown() -> None:
    channel = AgentChannel("ada", "s1")
    channel.admit(OfferMade(offer(), handoff()))
    assert channel.admit(AssignmentMade(completed_interaction(accepted=at(1), ended=at(2))))
    assert OFFER_ID not in channel.shown_offers


def test_effects_hints_name_agents_handoffs_and_the_queue_tagged_with_the_origin() -> None:
    fx = Effects()
    fx.to_agent("ada", OfferWithdrawn(OFFER_ID, RescindReason.EXPIRED))
    fx.close_session("bob", "s2", CLOSE_REPLACED)
    fx.changed(handoff(), moved=True)
    assert fx.hints("r1") == {"r1/a:ada", "r1/a:bob", f"r1/h:{handoff().id}", "r1/q"}
    assert Effects().hints("r1") == set()
    policies = Effects()
    policies.policies_changed()
    assert policies.hints("r1") == {"r1/r"}


async def test_hints_make_local_streams_reconcile_and_watches_reload() -> None:
    hub = EventHub()
    channel = AgentChannel("ada", "s1")
    hub.attach(channel)
    hub.hint_agent("ada")
    hub.hint_agent("nobody-here")  # no stream here: nothing to do
    assert isinstance(await next_event(channel), Reconcile)
    with hub.watch(handoff().id) as watch:
        hub.hint_handoff(handoff().id)
        assert await watch.next(TICK) is None  # reload: it changed elsewhere
        version = hub.queue_version
        hub.reset()  # the listener reconnected: look at everything again
        assert isinstance(await next_event(channel), Reconcile)
        assert await watch.next(TICK) is None
        assert hub.queue_version == version + 1
    assert hub.local_agents() == {"ada"}
    assert hub.watched_handoffs() == set()
