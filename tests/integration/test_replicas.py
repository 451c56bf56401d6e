"""Several replicas on one PostgreSQL database, in one test process, each behind its own gRPC
server: any RPC works on any replica, offers reach the agent wherever its stream is, watches
see changes made elsewhere, a dead replica's agents resume elsewhere with their work, and
poll-only mode (no LISTEN) still delivers. (Separate processes and SIGKILL: tests/e2e.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2
from sqlalchemy.engine import make_url

from humanline.config import Settings
from humanline.domain.clock import SystemClock
from humanline.domain.model import AgentStatus, StatusChangeReason
from humanline.grpc.server import create_server
from humanline.service.app import Humanline
from humanline.service.events import StatusUpdated
from humanline.store import create_store
from humanline.store.port import StoreError
from humanline.store.sql.listener import asyncpg_dsn
from humanline.tokens import KeyRing
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
    routing_pb2,
)
from tests.conftest import FAST, Served, empty_postgres
from tests.support.client import Stubs, error_details

Start = Callable[..., Awaitable[tuple[Served, Stubs]]]
# Offers outlive a replica's TTL (1 s) here, so that reaping, not expiry, takes them back.
REPLICAS = replace(FAST, offer_timeout=timedelta(seconds=10))

KEYS = KeyRing.generate()  # every replica's, as in a deployment


@pytest.fixture
async def start_replica(postgres_database: str) -> AsyncIterator[Start]:
    """Starts replicas on one emptied PostgreSQL database; stops those still running."""
    await asyncio.to_thread(empty_postgres, postgres_database)
    running: list[tuple[Served, Stubs]] = []

    async def start(*, notify: bool = True, policy_max_age: float = 5.0) -> tuple[Served, Stubs]:
        app = Humanline(
            create_store(postgres_database, SystemClock(), pool_size=4, notify=notify),
            REPLICAS,
            sweep_interval=0.25,
            watch_interval=0.05,
            replica_heartbeat=0.3,
            replica_ttl=1.0,
            policy_max_age=policy_max_age,
        )
        await app.start()
        served = Served(
            app, await create_server(app, "127.0.0.1:0", keys=KEYS, hello_timeout=2.0), KEYS
        )
        stubs = served.stubs()
        running.append((served, stubs))
        return served, stubs

    yield start
    for served, stubs in running:
        await stubs.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await served.stop()


async def kill(served: Served) -> None:
    """Stops a replica the way SIGKILL does: no drops recorded, no goodbye, no heartbeat."""
    served.app.sessions.dropped = lambda channel, clean: None  # type: ignore[method-assign]
    dispatcher = served.app.dispatcher
    for task in (*served.app.replicas._tasks, *dispatcher._tasks, *dispatcher._matching):
        task.cancel()
    # Its other readers die with it too: one caught reading when the store closes would leave
    # its connection to a ResourceWarning (a quality check did, in CI).
    await served.app.quality.stop()
    await served.app.pool_feed.stop()
    await served.app.vacuumer.stop()
    await served.running.server.stop(0)
    await served.app.store.close()


async def test_offers_cancels_and_completions_cross_replicas(start_replica: Start) -> None:
    _a, at_a = await start_replica()
    _b, at_b = await start_replica()
    await at_b.create_agent("ann", {"billing": 4})
    ann = at_a.agent("ann")  # the agent's stream lands on A
    await ann.hello()

    handoff = await at_b.request_handoff(skills={"billing": 2})  # the bot calls B
    offer = await ann.offer()
    assert offer.details.handoff_id == handoff.handoff_id
    interaction = await ann.accept(offer.offer_id)
    await at_b.complete("ann", interaction.interaction_id)  # completion through B
    assert (await at_a.get_handoff(handoff.handoff_id)).state == (
        handoff_pb2.HANDOFF_STATE_COMPLETED
    )

    gone = await at_b.request_handoff(skills={"billing": 2})
    pending = await ann.offer()
    await at_b.cancel_handoff(gone.handoff_id)  # the customer leaves, said through B
    rescinded = await ann.expect("offer_rescinded")
    assert rescinded.offer_id == pending.offer_id
    assert rescinded.reason == agent_service_pb2.RESCIND_REASON_HANDOFF_CANCELLED
    assert (await at_b.get_agent("ann")).load == 0


async def test_a_watch_sees_changes_made_on_another_replica(start_replica: Start) -> None:
    _, at_a = await start_replica()
    _, at_b = await start_replica()
    ahead = await at_b.request_handoff(urgency=handoff_pb2.URGENCY_CRITICAL)
    handoff = await at_b.request_handoff(urgency=handoff_pb2.URGENCY_LOW)
    stream = at_a.handoffs.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=handoff.handoff_id)
    )
    seen: list[handoff_pb2.Handoff] = []

    async def follow() -> None:
        async for message in stream:
            seen.append(message.handoff)

    following = asyncio.create_task(follow())
    async with asyncio.timeout(15):
        while not seen:
            await asyncio.sleep(0.02)
        assert seen[-1].queue_position == 2
        await at_b.cancel_handoff(ahead.handoff_id)  # the queue moves, on B
        while seen[-1].queue_position != 1:
            await asyncio.sleep(0.02)
        await at_b.create_agent("bob", {"general": 3}, display_name="Bob")
        bob = at_b.agent("bob")
        await bob.hello()
        interaction = await bob.accept((await bob.offer()).offer_id)
        await at_b.complete("bob", interaction.interaction_id)
        await following
    # Across replicas, transitions a few milliseconds apart may arrive as one update, but
    # what arrives is in lifecycle order and ends with the terminal state.
    order = [
        handoff_pb2.HANDOFF_STATE_QUEUED,
        handoff_pb2.HANDOFF_STATE_OFFERED,
        handoff_pb2.HANDOFF_STATE_ASSIGNED,
        handoff_pb2.HANDOFF_STATE_COMPLETED,
    ]
    ranks = [order.index(h.state) for h in seen]
    assert ranks == sorted(ranks)
    assert seen[-1].state == handoff_pb2.HANDOFF_STATE_COMPLETED
    assert seen[-1].assigned_agent.display_name == "Bob"


async def test_a_login_on_another_replica_takes_the_session_over(start_replica: Start) -> None:
    _, at_a = await start_replica()
    _, at_b = await start_replica()
    await at_a.create_agent("cid")
    old = at_a.agent("cid")
    await old.hello()
    new = at_b.agent("cid")
    await new.hello()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await old.next(timeout=5)
    assert ended.value.code() == grpc.StatusCode.ABORTED
    assert error_details(ended.value)["reason"] == "SESSION_REPLACED"


async def test_a_dead_replicas_agents_resume_elsewhere_with_their_work(
    start_replica: Start,
) -> None:
    a, at_a = await start_replica()
    _b, at_b = await start_replica()
    await at_b.create_agent("dee", {"general": 3}, capacity=2)
    dee = at_a.agent("dee")
    welcome = await dee.hello()
    held = await at_b.request_handoff()
    interaction = await dee.accept((await dee.offer()).offer_id)
    pending = await at_b.request_handoff()
    await dee.offer()

    await kill(a)
    # B declares A dead after its TTL: the offer on the dead stream goes back to the queue and
    # the agent is reconnecting, its accepted work kept.
    async with asyncio.timeout(10):
        while (await at_b.get_handoff(pending.handoff_id)).state != (
            handoff_pb2.HANDOFF_STATE_QUEUED
        ):
            await asyncio.sleep(0.1)
    assert (await at_b.get_agent("dee")).state == agent_pb2.AGENT_STATE_RECONNECTING
    assert (await at_b.get_handoff(held.handoff_id)).state == handoff_pb2.HANDOFF_STATE_ASSIGNED

    dee = at_b.agent("dee")
    resumed = await dee.resume(welcome.resume_token)
    assert [i.interaction_id for i in resumed.active_interactions] == [interaction.interaction_id]
    assert (await dee.offer()).details.handoff_id == pending.handoff_id
    await at_b.complete("dee", interaction.interaction_id)


async def test_a_slow_recovery_does_not_hold_up_the_reapers_heartbeat(
    start_replica: Start, postgres_database: str
) -> None:
    a, at_a = await start_replica()
    b, at_b = await start_replica()
    await at_a.create_agent("jo", {"general": 3})
    await at_a.agent("jo").hello(heartbeat_every=5)
    locker = await asyncpg.connect(asyncpg_dsn(make_url(postgres_database)))
    try:
        # The recovery of A's sessions waits for a lock on jo's session row, as long as we hold
        # it; meanwhile B keeps heartbeating (TTL 1 s), so nobody could take B for dead.
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM sessions WHERE agent_id = 'jo' FOR UPDATE")
            await kill(a)
            for _ in range(30):  # 3 s, three TTLs
                await asyncio.sleep(0.1)
                silent = await locker.fetchval(
                    "SELECT extract(epoch FROM clock_timestamp() - heartbeat_at) "
                    "FROM replicas WHERE id = $1",
                    b.app.replica_id,
                )
                assert silent < 1.0, f"B silent for {silent:.1f} s while recovering A"
            waiting = await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE sessions%'"
            )
            assert waiting == 1  # the recovery was indeed waiting all along
    finally:
        await locker.close()
    # The recovery completes once the lock is gone. (It began 3 s ago, and the grace period,
    # counted from then on the transaction's clock, is 1.5 s: jo is offline at once.)
    async with asyncio.timeout(10):
        while (await at_b.get_agent("jo")).state != agent_pb2.AGENT_STATE_OFFLINE:
            await asyncio.sleep(0.1)


async def test_a_dead_replicas_agent_who_never_returns_goes_offline(
    start_replica: Start,
) -> None:
    a, at_a = await start_replica()
    _, at_b = await start_replica()
    await at_b.create_agent("eve", {"general": 3})
    eve = at_a.agent("eve")
    await eve.hello()
    held = await at_b.request_handoff()
    await eve.accept((await eve.offer()).offer_id)
    await kill(a)
    # TTL (1 s) plus the grace period (1.5 s): then offline, and the work re-queued.
    async with asyncio.timeout(15):
        while (await at_b.get_agent("eve")).state != agent_pb2.AGENT_STATE_OFFLINE:
            await asyncio.sleep(0.1)
    requeued = await at_b.get_handoff(held.handoff_id)
    assert requeued.state == handoff_pb2.HANDOFF_STATE_QUEUED
    assert requeued.requeue_count == 1


async def test_poll_only_replicas_still_deliver(start_replica: Start) -> None:
    _, at_a = await start_replica(notify=False)
    _, at_b = await start_replica(notify=False)
    await at_a.create_agent("fay", {"general": 3})
    fay = at_a.agent("fay")
    await fay.hello()
    handoff = await at_b.request_handoff()
    offer = await fay.offer(timeout=5)  # found by the change-feed poll, not a NOTIFY
    assert offer.details.handoff_id == handoff.handoff_id
    await at_b.cancel_handoff(handoff.handoff_id)
    assert (await fay.expect("offer_rescinded", timeout=5)).offer_id == offer.offer_id


async def test_poll_only_replicas_see_a_slow_transaction_that_commits_late(
    start_replica: Start,
) -> None:
    _, at_a = await start_replica(notify=False)
    b, _ = await start_replica(notify=False)
    await at_a.create_agent("ivy", {"general": 3})
    ivy = at_a.agent("ivy")
    await ivy.hello(heartbeat_every=5)
    # On B, a transaction stamps ivy's row with its start time, then takes longer than the
    # polls' overlap (2 s) to commit; A's polls meanwhile move on, yet must still see it. (A
    # change B may make: set away for missed offers by its sweeper.)
    async with b.app.dispatcher.transaction() as (uow, fx):
        await asyncio.sleep(3.5)
        assert await uow.agents.set_status(
            "ivy", AgentStatus.AWAY, StatusChangeReason.MISSED_OFFERS, reset_misses=True
        )
        fx.to_agent("ivy", StatusUpdated(AgentStatus.AWAY, StatusChangeReason.MISSED_OFFERS))
    changed = await ivy.expect("status_changed", timeout=5)
    assert changed.status == agent_pb2.AGENT_STATUS_AWAY


async def _target_seconds(stubs: Stubs) -> float:
    """The target a new handoff of `general_question` (NORMAL urgency) is routed with."""
    handoff = await stubs.request_handoff()
    return handoff.target_time.ToSeconds() - handoff.create_time.ToSeconds()


async def _routes_with(stubs: Stubs, target: float, within: float) -> None:
    async with asyncio.timeout(within):
        while await _target_seconds(stubs) != target:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("notify", [True, False])
async def test_a_policy_changed_on_one_replica_routes_the_next_handoff_on_another(
    start_replica: Start, notify: bool
) -> None:
    """Each replica keeps the policies in force (`PolicyCache`), read again on the hint of a
    change: with hints, at once, though its copy would otherwise last an hour; without them
    (poll-only), once its copy is `policy_max_age` old."""
    _, at_a = await start_replica(notify=notify, policy_max_age=3600 if notify else 0.5)
    _, at_b = await start_replica(notify=notify, policy_max_age=3600 if notify else 0.5)
    fallback = await _target_seconds(at_b)  # B has read the policies: the fallback routes it
    await at_a.pool.CreateRoutingPolicy(
        pool_service_pb2.CreateRoutingPolicyRequest(
            policy=routing_pb2.RoutingPolicy(
                interaction_type="general_question", target=duration_pb2.Duration(seconds=17)
            )
        )
    )
    assert await _target_seconds(at_a) == 17  # where it changed: at once
    assert fallback != 17
    await _routes_with(at_b, 17, within=5)
    await at_b.pool.DeleteRoutingPolicy(
        pool_service_pb2.DeleteRoutingPolicyRequest(interaction_type="general_question")
    )
    assert await _target_seconds(at_b) == fallback
    await _routes_with(at_a, fallback, within=5)


async def stop_loop(served: Served, name: str) -> None:
    """Stops one of a replica's background loops ("replica-heartbeat", "replica-reaper", ...),
    so that a test decides when that step runs."""
    for task in served.app.replicas._tasks:
        if task.get_name() == name:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_replica_presumed_dead_hands_its_streams_back(start_replica: Start) -> None:
    a, at_a = await start_replica()
    b, _ = await start_replica()
    await at_a.create_agent("gus", {"general": 3})
    gus = at_a.agent("gus")
    welcome = await gus.hello(heartbeat_every=5)
    # A stalls past its TTL (simulated: its heartbeat stops and is set far in the past) and B
    # reaps it. Both loops stop first: A's own heartbeat would refresh the row the test has
    # just aged, and B's reaper could reap A before the test does (each seen under load).
    await stop_loop(a, "replica-heartbeat")
    await stop_loop(b, "replica-reaper")
    async with a.app.store.write() as uow:
        conn = uow.agents._conn  # type: ignore[attr-defined]
        await conn.execute(
            sa.text("UPDATE replicas SET heartbeat_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": a.app.replica_id},
        )
    assert a.app.replica_id in await b.app.replicas.reap()
    # A wakes and notices at its next heartbeat, takes its place again, and its stream, whose
    # session B moved into the grace period, ends so that the app resumes.
    await a.app.replicas.heartbeat()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await gus.next(timeout=5)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(ended.value)["reason"] == "SESSION_DETACHED"
    again = at_a.agent("gus")
    assert (await again.resume(welcome.resume_token)).resumed
    async with asyncio.timeout(5):  # that heartbeat put it back among the living
        while True:
            async with a.app.store.read() as uow:
                if a.app.replica_id in await uow.replicas.live():
                    break
            await asyncio.sleep(0.1)


async def someone_waits(locker: asyncpg.Connection, *locktypes: str) -> None:
    """Returns once a transaction waits for a lock of one of `locktypes` (pg_locks)."""
    async with asyncio.timeout(10):
        while not await locker.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = ANY($1) AND NOT granted",
            list(locktypes),
        ):
            await asyncio.sleep(0.02)


# Test-only fault injection: a resume's UPDATE of its session (the only UPDATE of sessions
# that sets connection_id) first waits for an advisory lock the test holds, between the
# resume's read of the agent's pending offers and its commit.
HELD_RESUME = """
CREATE FUNCTION test_held_resume() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_query() LIKE '%connection_id=%' THEN
        PERFORM pg_advisory_xact_lock(4242);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER test_held_resume BEFORE UPDATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION test_held_resume();
"""
RELEASE_RESUME = """
DROP TRIGGER IF EXISTS test_held_resume ON sessions;
DROP FUNCTION IF EXISTS test_held_resume();
"""


# Seen in three-replica kill runs: an agent resumed on B while A made it an offer. B's resume
# found no pending offer, A's offer committed (its hint reached B before B attached the new
# stream, and B's change feed skips the agent, whose last write was the resume's), and the
# offer sat unseen until it expired.
async def test_an_offer_made_elsewhere_while_a_resume_commits_reaches_the_new_stream(
    start_replica: Start, postgres_database: str
) -> None:
    _, at_a = await start_replica()
    _, at_b = await start_replica()
    await at_a.create_agent("kit", {"billing": 4})
    old = at_a.agent("kit")
    welcome = await old.hello(heartbeat_every=5)
    locker = await asyncpg.connect(asyncpg_dsn(make_url(postgres_database)))
    try:
        await locker.execute(HELD_RESUME)
        await locker.execute("SELECT pg_advisory_lock(4242)")
        new = at_b.agent("kit")  # the app reconnects to B before A noticed anything
        resuming = asyncio.create_task(new.resume(welcome.resume_token))
        await someone_waits(locker, "advisory")
        # The resume has read kit's (no) pending offers and waits; A offers kit a handoff.
        handoff = await at_a.request_handoff(skills={"billing": 2})
        assert handoff.state == handoff_pb2.HANDOFF_STATE_OFFERED
        await locker.execute("SELECT pg_advisory_unlock(4242)")
        assert (await resuming).resumed
    finally:
        await locker.execute(RELEASE_RESUME)
        await locker.close()
    offer = await new.offer(timeout=5)  # it expires after 10 s
    assert offer.details.handoff_id == handoff.handoff_id
    interaction = await new.accept(offer.offer_id)
    await at_a.complete("kit", interaction.interaction_id)


# Test-only fault injection: an offer's INSERT first waits for an advisory lock the test
# holds, after its transaction reserved the agent's slot (and so holds the agent's row).
HELD_OFFER = """
CREATE FUNCTION test_held_offer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4243);
    RETURN NULL;
END $$;
CREATE TRIGGER test_held_offer BEFORE INSERT ON offers
    FOR EACH STATEMENT EXECUTE FUNCTION test_held_offer();
"""
RELEASE_OFFER = """
DROP TRIGGER IF EXISTS test_held_offer ON offers;
DROP FUNCTION IF EXISTS test_held_offer();
"""


# Seen in a three-replica drain run: an offer committed while its agent's stream was being let
# go. The drop read the agent's pending offers (none yet), then marked the agent disconnected
# (waiting for the offer's transaction, which held the agent's row); the offer stayed pending
# to an agent with no stream, until it expired or the agent came back.
@pytest.mark.parametrize("how", ["dropped", "logged_out"])
async def test_an_offer_committed_as_the_stream_goes_is_taken_back(
    start_replica: Start, postgres_database: str, how: str
) -> None:
    _, at_a = await start_replica()
    await at_a.create_agent("kai", {"billing": 4})
    kai = at_a.agent("kai")
    await kai.hello(heartbeat_every=5)
    locker = await asyncpg.connect(asyncpg_dsn(make_url(postgres_database)))

    try:
        await locker.execute(HELD_OFFER)
        await locker.execute("SELECT pg_advisory_lock(4243)")
        asking = asyncio.create_task(at_a.request_handoff(skills={"billing": 2}))
        await someone_waits(
            locker, "advisory"
        )  # the offer's transaction holds kai's slot and waits
        kai.drop() if how == "dropped" else kai.leave()
        await someone_waits(
            locker, "transactionid", "tuple"
        )  # the stream's end waits for kai's row
        await locker.execute("SELECT pg_advisory_unlock(4243)")
        handoff = await asking
    finally:
        await locker.execute(RELEASE_OFFER)
        await locker.close()
    gone = agent_pb2.AGENT_STATE_RECONNECTING if how == "dropped" else agent_pb2.AGENT_STATE_OFFLINE
    async with asyncio.timeout(5):
        while (await at_a.get_agent("kai")).state != gone:
            await asyncio.sleep(0.02)
    stored = await at_a.get_handoff(handoff.handoff_id)
    assert stored.state == handoff_pb2.HANDOFF_STATE_QUEUED  # back in its place, at once
    assert [o.state for o in stored.offers] == [handoff_pb2.OFFER_STATE_RESCINDED]


async def test_a_revived_replicas_stream_whose_session_ended_meanwhile_starts_over(
    start_replica: Start,
) -> None:
    a, at_a = await start_replica()
    _, at_b = await start_replica()
    await at_a.create_agent("hal", {"general": 3})
    hal = at_a.agent("hal")
    await hal.hello(heartbeat_every=5)
    # A freezes (no heartbeat, no hints, no polls); B declares it dead after the TTL (1 s),
    # and the grace period (1.5 s) of hal's session runs out.
    for task in a.app.replicas._tasks:
        task.cancel()
    async with asyncio.timeout(15):
        while (await at_b.get_agent("hal")).state != agent_pb2.AGENT_STATE_OFFLINE:
            await asyncio.sleep(0.1)
    # A runs again and finds the verdict: the stream ends as detached (start over), not as
    # taken over by another log-in (which tells an app to stay away).
    await a.app.replicas.heartbeat()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await hal.next(timeout=5)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(ended.value)["reason"] == "SESSION_DETACHED"
    assert not (await at_b.agent("hal").hello()).resumed


async def test_a_draining_replica_hands_its_agents_over_keeping_their_work(
    start_replica: Start,
) -> None:
    a, at_a = await start_replica()
    b, at_b = await start_replica()
    await at_b.create_agent("fay", {"general": 3}, capacity=2)
    await at_b.create_agent("gil", {"general": 3})
    await at_b.create_agent("ivy", {"general": 3})
    fay = at_a.agent("fay")
    welcome = await fay.hello()
    held = await at_b.request_handoff()
    interaction = await fay.accept((await fay.offer()).offer_id)
    pending = await at_b.request_handoff()
    offer = await fay.offer()
    gil = at_a.agent("gil")
    await gil.hello(agent_pb2.AGENT_STATUS_AWAY)

    await a.app.drain()  # what SIGTERM does first, with the server still serving calls

    # Fay hears her pending offer taken back, then the drain with her grace deadline, then
    # the stream ends; the agent with nothing (gil) is told too.
    rescinded = await fay.expect("offer_rescinded")
    assert rescinded.offer_id == offer.offer_id
    assert rescinded.reason == agent_service_pb2.RESCIND_REASON_SESSION_ENDED
    drain = await fay.expect("drain")
    grace = REPLICAS.grace_period.total_seconds()
    left = drain.resume_before.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert 0 < left.total_seconds() <= grace
    for agent in (fay, gil):
        if agent is gil:
            assert (await gil.expect("drain")).HasField("resume_before")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await agent.next(timeout=5)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_details(ended.value)["reason"] == "SERVER_DRAINING"

    # While A drains: its agents get no offers (they are between replicas) and it takes no
    # new agent streams; its unary calls still work, and B takes on the queue.
    assert (await at_b.get_agent("fay")).state == agent_pb2.AGENT_STATE_RECONNECTING
    assert (await at_a.get_handoff(pending.handoff_id)).state == handoff_pb2.HANDOFF_STATE_QUEUED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await at_a.agent("ivy").hello()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(refused.value)["reason"] == "SERVER_DRAINING"
    assert (await at_b.get_agent("ivy")).state == agent_pb2.AGENT_STATE_OFFLINE
    ivy = at_b.agent("ivy")
    await ivy.hello()
    assert (await ivy.offer()).details.handoff_id == pending.handoff_id
    third = await at_a.request_handoff()  # a bot's call to A still lands

    # Fay resumes on B with her accepted work and completes it; her second slot takes the
    # third handoff.
    fay = at_b.agent("fay")
    resumed = await fay.resume(welcome.resume_token)
    assert resumed.resumed
    assert [i.interaction_id for i in resumed.active_interactions] == [interaction.interaction_id]
    assert (await fay.offer()).details.handoff_id == third.handoff_id
    done = await at_a.complete("fay", interaction.interaction_id)
    assert done.outcome == handoff_pb2.OUTCOME_RESOLVED
    assert (await at_b.get_handoff(held.handoff_id)).state == handoff_pb2.HANDOFF_STATE_COMPLETED
    async with a.app.store.read() as uow:
        session = await uow.sessions.get(resumed.session_id)
    assert session is not None
    assert session.replica_id == b.app.replica_id


async def test_a_drain_that_cannot_reach_the_store_still_ends_the_streams(
    start_replica: Start,
) -> None:
    a, at_a = await start_replica()
    await at_a.create_agent("kim", {"general": 3})
    kim = at_a.agent("kim")
    await kim.hello()

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise StoreError("the database is down")

    a.app.sessions._start_hand_over = unavailable  # type: ignore[method-assign]
    await a.app.drain()
    drain = await kim.expect("drain")
    assert not drain.HasField("resume_before")  # the drop that follows starts the grace
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await kim.next(timeout=5)
    assert error_details(ended.value)["reason"] == "SERVER_DRAINING"
    async with asyncio.timeout(5):
        while (await at_a.get_agent("kim")).state != agent_pb2.AGENT_STATE_RECONNECTING:
            await asyncio.sleep(0.05)


def test_replica_settings_refuse_a_ttl_shorter_than_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="twice the heartbeat"):
        Settings(replica_heartbeat_seconds=2, replica_ttl_seconds=3)
