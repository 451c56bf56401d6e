"""PoolService.WatchPoolStatus over real gRPC: the status first, then changes only.

The servers here tick (re-read the pool for what time alone changes) once an hour unless a
test asks otherwise, so every message after the first that these tests wait for must have
been set off by the change itself, and a quiet spell is quiet for sure. GetPoolStatus gets
the handoffs at risk too; their counting in SQL is checked exactly against deadlines set
relative to the store's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from humanline.domain.clock import SystemClock
from humanline.domain.model import HandoffState
from humanline.domain.rules import DispatchPolicy
from humanline.grpc.server import create_server
from humanline.service.app import Humanline
from humanline.store import create_store
from humanline.store.port import AtRisk
from humanline.store.sql.store import SqlStore
from humanline.tokens import KeyRing
from humanline.v1 import agent_pb2, handoff_pb2, pool_service_pb2, routing_pb2
from tests.conftest import FAST, Served, empty_postgres
from tests.support.client import Stubs, error_details
from tests.unit.builders import handoff

Status = pool_service_pb2.PoolStatus
AVAILABLE, BUSY, OFFLINE = (
    agent_pb2.AGENT_STATE_AVAILABLE,
    agent_pb2.AGENT_STATE_BUSY,
    agent_pb2.AGENT_STATE_OFFLINE,
)
HOUR = 3600.0
KEYS = KeyRing.generate()
Start = Callable[..., Awaitable[tuple[Served, Stubs]]]


def _span(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


async def _serve(db_url: str, policy: DispatchPolicy, tick: float) -> Served:
    app = Humanline(
        create_store(db_url, SystemClock()),
        policy,
        sweep_interval=0.25,
        watch_interval=0.05,
        pool_watch_tick=tick,
    )
    await app.start()
    running = await create_server(app, "127.0.0.1:0", keys=KEYS, hello_timeout=2.0)
    return Served(app, running, KEYS)


@pytest.fixture
def policy() -> DispatchPolicy:
    """Offers that wait for the test's accept however loaded the machine."""
    return replace(FAST, offer_timeout=timedelta(seconds=30))


@pytest.fixture
async def start(db_url: str, policy: DispatchPolicy) -> AsyncIterator[Start]:
    """Starts the service (ticking every `tick` seconds, an hour unless told) and a client;
    stops what is still running at the end."""
    running: list[tuple[Served, Stubs]] = []

    async def begin(tick: float = HOUR) -> tuple[Served, Stubs]:
        served = await _serve(db_url, policy, tick)
        running.append((served, served.stubs()))
        return running[-1]

    yield begin
    for served, stubs in running:
        await stubs.close()
        async with asyncio.timeout(15):
            await served.stop()


class Watch:
    """One WatchPoolStatus call, read by a task of its own (cancelling a read on a grpc.aio
    call would cancel the call), so that waits can time out."""

    def __init__(self, client: Stubs, **request: Any) -> None:
        self.call = client.pool.WatchPoolStatus(pool_service_pb2.WatchPoolStatusRequest(**request))
        self._inbox: asyncio.Queue[Status | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())
        self.received: list[Status] = []

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self._inbox.put_nowait(message.status)
            self._inbox.put_nowait(EOFError("stream ended"))
        except grpc.aio.AioRpcError as error:
            self._inbox.put_nowait(error)

    async def next(self, timeout: float = 10.0) -> Status:
        """The next message (raises the call's error, EOFError, or TimeoutError)."""
        async with asyncio.timeout(timeout):
            message = await self._inbox.get()
        if isinstance(message, BaseException):
            self._inbox.put_nowait(message)
            raise message
        self.received.append(message)
        return message

    async def until(self, wanted: Callable[[Status], bool], timeout: float = 10.0) -> Status:
        """The first message from now on that is `wanted`."""
        async with asyncio.timeout(timeout):
            while not wanted(message := await self.next(timeout)):
                pass
        return message

    async def quiet(self, seconds: float) -> list[Status]:
        """What comes within `seconds`."""
        seen: list[Status] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    seen.append(await self.next(seconds))
        return seen

    def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()


def timeless(status: Status) -> Status:
    """The status without what time alone changes."""
    copy = Status()
    copy.CopyFrom(status)
    copy.ClearField("snapshot_time")
    copy.ClearField("oldest_wait")
    return copy


def states(status: Status) -> dict[int, int]:
    return {c.state: c.count for c in status.agents_by_state}


def skill_states(status: Status, skill: str) -> dict[int, int]:
    for entry in status.agents_by_skill:
        if entry.skill == skill:
            return {c.state: c.count for c in entry.agents_by_state}
    return {}


def queued(status: Status) -> dict[str, int]:
    return {c.interaction_type: c.count for c in status.queue_by_interaction_type}


def at_risk(status: Status) -> dict[str, tuple[int, int]]:
    return {r.interaction_type: (r.overdue, r.due_soon) for r in status.at_risk}


async def _policy(client: Stubs, interaction_type: str, target: float) -> None:
    await client.pool.CreateRoutingPolicy(
        pool_service_pb2.CreateRoutingPolicyRequest(
            policy=routing_pb2.RoutingPolicy(
                interaction_type=interaction_type, target=_span(target), max_wait=_span(HOUR)
            )
        )
    )


# --- the stream ------------------------------------------------------------------------------


async def test_the_first_message_is_the_pool_status(start: Start) -> None:
    served, client = await start()
    await client.create_agent("ann", {"billing": 4, "fraud": 2}, capacity=2)
    await client.create_agent("bob", {"billing": 3})
    await client.agent("ann").hello()
    await client.request_handoff(skills={"legal": 5})  # nobody can take it
    await served.app.dispatcher.settled()
    asked = await client.pool_status()
    watch = Watch(client)
    try:
        first = await watch.next()
    finally:
        watch.close()
    assert timeless(first) == timeless(asked)
    assert first.oldest_wait.ToTimedelta() >= asked.oldest_wait.ToTimedelta() > timedelta(0)
    assert first.at_risk_horizon.ToTimedelta() == timedelta(seconds=15)
    billing, fraud = skill_states(first, "billing"), skill_states(first, "fraud")
    assert len(billing) == len(agent_pb2.AgentState.values()) - 1  # every state but unspecified
    assert (billing[AVAILABLE], billing[OFFLINE], sum(billing.values())) == (1, 1, 2)
    assert (fraud[AVAILABLE], sum(fraud.values())) == (1, 1)


async def test_changes_are_sent_as_they_happen(start: Start) -> None:
    _, client = await start()
    watch = Watch(client, min_interval=_span(0.1))
    try:
        first = await watch.next()
        assert sum(states(first).values()) == 0
        assert not first.agents_by_skill

        await client.create_agent("ann", {"billing": 4})
        created = await watch.until(lambda s: states(s)[OFFLINE] == 1)
        assert skill_states(created, "billing")[OFFLINE] == 1

        ann = client.agent("ann")
        await ann.hello()
        online = await watch.until(lambda s: states(s)[AVAILABLE] == 1)
        assert states(online)[OFFLINE] == 0
        assert skill_states(online, "billing")[AVAILABLE] == 1
        assert [(c.key, c.available_agents, c.free_capacity) for c in online.skills] == [
            ("billing", 1, 1)
        ]

        await client.request_handoff(interaction_type="stuck", skills={"legal": 5})
        waiting = await watch.until(lambda s: queued(s) == {"stuck": 1})
        assert states(waiting)[AVAILABLE] == 1

        await client.request_handoff(interaction_type="billing_question", skills={"billing": 2})
        offer = await ann.offer()
        offered = await watch.until(lambda s: queued(s) == {"billing_question": 1, "stuck": 1})
        assert states(offered)[BUSY] == 1  # the pending offer fills her one slot

        await ann.accept(offer.offer_id)
        taken = await watch.until(lambda s: queued(s) == {"stuck": 1})
        assert states(taken)[BUSY] == 1
        assert skill_states(taken, "billing")[BUSY] == 1
        assert offered.oldest_wait.ToTimedelta() > timedelta(0)
    finally:
        watch.close()
    # Changes only: each message differs from the one before by more than time.
    sent = [timeless(s) for s in watch.received]
    assert all(a != b for a, b in itertools.pairwise(sent)), sent


async def test_nothing_is_sent_while_nothing_changes(start: Start) -> None:
    served, client = await start()
    await client.create_agent("ann", {"billing": 4})
    await client.agent("ann").hello()
    stuck = await client.request_handoff(skills={"legal": 5})  # waits, its wait growing
    await served.app.dispatcher.settled()
    now = timeless(await client.pool_status())
    watch = Watch(client, min_interval=_span(0.1))
    try:
        await watch.until(lambda s: timeless(s) == now)
        reads = served.app.pool_feed.reads
        # A change that leaves the status as it was (a display name) is read, not sent.
        await client.pool.UpdateAgent(
            pool_service_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(agent_id="ann", display_name="Ann B.")
            )
        )
        assert await watch.quiet(2.5) == []
        assert served.app.pool_feed.reads > reads
        # The stream is alive all the same: the next change comes.
        await client.cancel_handoff(stuck.handoff_id)
        emptied = await watch.until(lambda s: not queued(s))
        assert emptied.oldest_wait.ToTimedelta() == timedelta(0)
    finally:
        watch.close()


async def test_the_oldest_wait_alone_is_sent_on_the_tick_while_something_waits(
    start: Start,
) -> None:
    served, client = await start(tick=0.3)
    stuck = await client.request_handoff(skills={"legal": 5})
    await served.app.dispatcher.settled()
    watch = Watch(client, min_interval=_span(0.1))
    try:
        first = await watch.next()
        later = await watch.next()  # nothing changed but time
        assert timeless(later) == timeless(first)
        assert later.oldest_wait.ToTimedelta() > first.oldest_wait.ToTimedelta()
        await client.cancel_handoff(stuck.handoff_id)
        await watch.until(lambda s: not queued(s))
        # Ticks go on, but with nothing waiting nothing grows: nothing is sent.
        assert await watch.quiet(1.5) == []
    finally:
        watch.close()


async def test_one_read_serves_every_watch(start: Start) -> None:
    served, client = await start()
    watches = [Watch(client, min_interval=_span(0.1)) for _ in range(10)]
    try:
        for watch in watches:
            await watch.next()
        reads = served.app.pool_feed.reads
        await client.create_agent("ann", {"billing": 4})
        for watch in watches:
            await watch.until(lambda s: states(s)[OFFLINE] == 1)
        assert served.app.pool_feed.reads - reads <= 2  # not one per watch
    finally:
        for watch in watches:
            watch.close()


async def test_the_stream_ends_when_the_server_shuts_down(start: Start) -> None:
    served, client = await start()
    watch = Watch(client)
    await watch.next()
    async with asyncio.timeout(15):
        await served.stop()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await watch.next()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(ended.value)["reason"] == "SERVER_SHUTTING_DOWN"


@pytest.mark.parametrize(
    ("request_fields", "violations"),
    [
        ({"at_risk_horizon": _span(-1)}, {"at_risk_horizon"}),
        ({"at_risk_horizon": _span(HOUR + 1)}, {"at_risk_horizon"}),
        ({"min_interval": _span(0.05)}, {"min_interval"}),
        ({"min_interval": _span(61)}, {"min_interval"}),
        ({"min_interval": duration_pb2.Duration()}, {"min_interval"}),
        ({"at_risk_horizon": duration_pb2.Duration(seconds=1, nanos=-5)}, {"at_risk_horizon"}),
        (
            {"at_risk_horizon": _span(-0.5), "min_interval": _span(0.01)},
            {"at_risk_horizon", "min_interval"},
        ),
    ],
)
async def test_bad_requests_are_refused_with_every_field_named(
    start: Start, request_fields: dict[str, Any], violations: set[str]
) -> None:
    _, client = await start()
    watch = Watch(client, **request_fields)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await watch.next()
    finally:
        watch.close()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_details(refused.value)["violations"]) == violations
    if "min_interval" not in violations:
        request = pool_service_pb2.GetPoolStatusRequest(**request_fields)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await client.pool.GetPoolStatus(request)
        assert unary.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(error_details(unary.value)["violations"]) == violations


# --- handoffs at risk ------------------------------------------------------------------------


async def test_handoffs_due_within_the_horizon_are_at_risk(start: Start) -> None:
    _, client = await start()
    await _policy(client, "slow", target=600)  # due in 10 minutes
    near, far = Watch(client, at_risk_horizon=_span(HOUR)), Watch(client)  # 15 s
    try:
        await near.next()
        await far.next()
        await client.request_handoff(interaction_type="slow", skills={"legal": 5})
        assert at_risk(await near.until(lambda s: bool(queued(s)))) == {"slow": (0, 1)}
        seen_far = await far.until(lambda s: bool(queued(s)))
        assert at_risk(seen_far) == {}
        assert seen_far.at_risk_horizon.ToTimedelta() == timedelta(seconds=15)
    finally:
        near.close()
        far.close()
    wide = await client.pool.GetPoolStatus(
        pool_service_pb2.GetPoolStatusRequest(at_risk_horizon=_span(HOUR))
    )
    assert at_risk(wide.status) == {"slow": (0, 1)}
    assert wide.status.at_risk_horizon.ToTimedelta() == timedelta(hours=1)


async def test_a_handoff_past_its_target_is_sent_as_overdue_on_the_tick(start: Start) -> None:
    _, client = await start(tick=0.3)
    await _policy(client, "quick", target=0.5)
    watch = Watch(client, at_risk_horizon=duration_pb2.Duration())  # past the deadline only
    try:
        await watch.next()
        await client.request_handoff(
            interaction_type="quick", skills={"legal": 5}, urgency=handoff_pb2.URGENCY_NORMAL
        )
        overdue = await watch.until(lambda s: bool(s.at_risk))
        assert at_risk(overdue) == {"quick": (1, 0)}
    finally:
        watch.close()


async def test_at_risk_counts_waiting_handoffs_by_deadline(db_url: str) -> None:
    """The SQL, exactly: deadlines set around the store's clock (the database's, on
    PostgreSQL), with minutes to spare either side."""
    store = SqlStore(db_url, SystemClock())
    await store.open()
    try:
        async with store.read() as uow:
            now = uow.now
        minute = timedelta(minutes=1)
        rows = [
            ("billing", HandoffState.QUEUED, now - minute),  # overdue
            ("billing", HandoffState.QUEUED, now + 2 * minute),  # due within 5 minutes
            ("billing", HandoffState.QUEUED, now + 60 * minute),  # not within 5 minutes
            ("fraud", HandoffState.QUEUED, now - 10 * minute),  # overdue
            ("fraud", HandoffState.CANCELLED, now - 10 * minute),  # not waiting
            ("orders", HandoffState.QUEUED, now + 30 * minute),  # not within 5 minutes
        ]
        async with store.write() as uow:
            for i, (kind, state, deadline) in enumerate(rows):
                await uow.handoffs.insert(
                    handoff(
                        f"00000000-0000-4000-8000-{i:012d}",
                        state=state,
                        created_at=now - 20 * minute,
                        deadline=deadline,
                        ended_at=now - minute if state is HandoffState.CANCELLED else None,
                        request_id=f"10000000-0000-4000-8000-{i:012d}",
                        interaction_type=kind,
                    )
                )
        async with store.read() as uow:
            within = await uow.pool.at_risk(5 * minute)
            past_only = await uow.pool.at_risk(timedelta(0))
            wide = await uow.pool.at_risk(2 * 60 * minute)
        assert within == [AtRisk("billing", 1, 1), AtRisk("fraud", 1, 0)]
        assert past_only == [AtRisk("billing", 1, 0), AtRisk("fraud", 1, 0)]
        assert wide == [AtRisk("billing", 1, 2), AtRisk("fraud", 1, 0), AtRisk("orders", 0, 1)]
    finally:
        await store.close()


# --- replicas ---------------------------------------------------------------------------------


async def test_a_watch_hears_of_changes_made_on_another_replica(postgres_database: str) -> None:
    """A log-in names no handoff: the other replica hears of it by the `p` hint (its tick is
    an hour away)."""
    await asyncio.to_thread(empty_postgres, postgres_database)
    a = await _serve(postgres_database, DispatchPolicy(), HOUR)
    b = await _serve(postgres_database, DispatchPolicy(), HOUR)
    at_a, at_b = a.stubs(), b.stubs()
    watch = Watch(at_a, min_interval=_span(0.1))
    try:
        await watch.next()
        await at_b.create_agent("ann", {"billing": 4})
        await watch.until(lambda s: states(s)[OFFLINE] == 1)
        await at_b.agent("ann").hello()
        await watch.until(lambda s: states(s)[AVAILABLE] == 1)
    finally:
        watch.close()
        for stubs in (at_a, at_b):
            await stubs.close()
        for served in (a, b):
            async with asyncio.timeout(15):
                await served.stop()
