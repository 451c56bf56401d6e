"""Round trips to the database, counted (`humanline.store.trips`): the store's count is what
went over the wire, and each step of a handoff's life stays within its budget.

The budgets are today's counts. They are ceilings: a change that adds a round trip to the
hot path fails here, and one that saves some lowers them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from humanline.domain.clock import SystemClock
from humanline.domain.model import (
    AgentProfile,
    AgentStatus,
    Completion,
    DeclineReason,
    HandoffState,
    Outcome,
)
from humanline.domain.rules import DispatchPolicy
from humanline.service.app import Humanline
from humanline.store import create_store
from humanline.store.port import DuplicateKey
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import offers
from humanline.store.trips import counting
from tests.support.pgwire import PgWireCounter
from tests.unit import builders

# The most round trips each step may take, per store, once its connection has prepared its
# statements. A request is offered in its own transaction; the expiry is a whole sweep.
BUDGETS = {
    "sqlite": {"request": 14, "accept": 6, "complete": 10, "decline": 7, "expire": 19},
    "postgres": {"request": 17, "accept": 8, "complete": 12, "decline": 9, "expire": 25},
}


async def test_the_stores_count_is_what_went_over_the_wire(db_url: str, backend: str) -> None:
    """Checked against the Sync, Query and Flush messages a proxy in front of PostgreSQL saw:
    transactions that commit and that fail, brief reads, snapshots, hints, a new
    connection's first statements (asyncpg's and SQLAlchemy's own included)."""
    if backend != "postgres":
        pytest.skip("round trips on PostgreSQL's wire")
    url = make_url(db_url)
    wire = PgWireCounter(url.host or "127.0.0.1", url.port or 5432)
    await wire.start()
    proxied = url.set(host="127.0.0.1", port=wire.port).render_as_string(hide_password=False)
    store = SqlStore(proxied, SystemClock(), pool_size=2)
    try:
        await store.open()
        assert store.round_trips.total == wire.round_trips  # opening and migrating too
        handoff = builders.handoff(str(uuid.uuid4()), request_id=str(uuid.uuid4()))
        async with store.write() as uow:
            await uow.handoffs.insert(handoff)
            await uow.notify([f"handoff:{handoff.id}"])
        with pytest.raises(DuplicateKey):
            async with store.write() as uow:
                await uow.handoffs.insert(handoff)
        async with store.read(snapshot=True) as uow, store.read() as other:
            assert await uow.handoffs.get(handoff.id) is not None
            assert await other.pool.snapshot() is not None
        for _ in range(3):
            async with store.read(brief=True) as uow:
                assert await uow.agents.get("nobody") is None
        assert store.round_trips.total > 0
        assert store.round_trips.total == wire.round_trips
    finally:
        await store.close()
        await wire.close()


@pytest.fixture
async def quiet(db_url: str) -> AsyncIterator[Humanline]:
    """The service with its background work slowed to a stop (no sweeps, checks, feeds,
    prunes or vacuums while a step is counted, the routing policies read once), and an agent
    on it."""
    app = Humanline(
        create_store(db_url, SystemClock()),
        DispatchPolicy(offer_timeout=timedelta(seconds=60)),
        sweep_interval=3600,
        quality_check_interval=3600,
        pool_watch_tick=3600,
        prune_interval=3600,
        vacuum_interval=3600,
        policy_max_age=3600,
    )
    await app.start()
    try:
        profile = AgentProfile(
            display_name="Ann", skills={"billing": 3}, languages=frozenset(), capacity=1
        )
        await app.pool.create_agent("ann", profile)
        await app.sessions.connect("ann", AgentStatus.AVAILABLE)
        await app.dispatcher.settled()
        await app.policy_cache.choose("order_lookup")  # read once a replica, not per request
        yield app
    finally:
        await app.stop()


async def _counted(app: Humanline, step: object) -> int:
    """The step's round trips, its connections' first preparing of a statement aside (which
    of the pool's connections a step gets, and what that one has prepared, varies)."""
    with counting() as count:
        await step  # type: ignore[misc]
    await app.dispatcher.settled()  # what it set off, done before the next step is counted
    return count.steady


async def test_each_step_of_a_handoffs_life_stays_within_its_budget(
    quiet: Humanline, backend: str
) -> None:
    app = quiet
    budget = BUDGETS[backend]
    counts: dict[str, int] = {}

    async def request() -> str:
        view = await app.handoffs.request(
            builders.request(
                request_id=str(uuid.uuid4()),
                interaction_type="order_lookup",
                skills={"billing": 1},
                summary="where is my order",
            ),
            "bot-1",
        )
        assert view.handoff.state is HandoffState.OFFERED  # to ann, in the same transaction
        assert view.handoff.offer_id is not None
        return view.handoff.offer_id

    offer_id = ""

    async def offered() -> None:
        nonlocal offer_id
        offer_id = await request()

    counts["request"] = await _counted(app, offered())
    interaction = None

    async def accept() -> None:
        nonlocal interaction
        interaction = await app.sessions.accept("ann", offer_id)

    counts["accept"] = await _counted(app, accept())
    assert interaction is not None
    done = Completion(Outcome.RESOLVED, "REFUND/OK", "refunded")
    counts["complete"] = await _counted(
        app, app.sessions.complete("ann", interaction.offer.id, done)
    )

    offer_id = await request()
    await app.dispatcher.settled()
    counts["decline"] = await _counted(
        app, app.sessions.decline("ann", offer_id, DeclineReason.BUSY)
    )

    await app.sessions.set_status("ann", AgentStatus.AVAILABLE)
    await app.dispatcher.settled()
    offer_id = await request()
    async with app.store.write() as uow:  # due now (the repositories have no such write)
        due = sa.update(offers).where(offers.c.id == offer_id)
        await uow.offers._conn.execute(due.values(expires_at=uow.now - timedelta(seconds=1)))  # type: ignore[attr-defined]
    await app.dispatcher.settled()
    counts["expire"] = await _counted(app, app.dispatcher.sweep())
    async with app.store.read() as uow:
        expired = await uow.offers.get(offer_id)
    assert expired is not None
    assert expired.state.name == "EXPIRED"

    print(f"round trips on {backend}: {counts}")
    over = {step: n for step, n in counts.items() if n > budget[step]}
    assert not over, f"over budget ({budget}): {over}"
