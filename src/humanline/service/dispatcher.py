"""The dispatcher: runs matching when something changes, and expires what is due.

Matching is event-driven. Committed transactions hand the dispatcher ids to look at (a new or
returned handoff, an agent with a free slot); a worker takes them in order and matches each,
up to `concurrency` at once, in a transaction of its own, offering work by the rules of
`humanline.domain.matching` (concurrent matches share commits on the embedded store, whose
writer groups them; two that pick the same agent or handoff are a lost race, tried again).
Each match restores the invariant "no queued handoff has an eligible agent with free
capacity" for the changed side, so the backlog drains by itself, earliest deadline first.

Time-driven work (offer expiry, end of a grace period, a waiting handoff's relaxation steps,
the end of its wait for a known agent and its expiry) is scheduled precisely when the offer,
drop or handoff happens; a sweep at least every `sweep_interval` seconds also catches
anything a lost wake-up would otherwise delay, and nudges ready agents to look for work.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import structlog

from humanline.domain.clock import Clock
from humanline.domain.model import (
    AgentState,
    AgentStatus,
    HandoffState,
    RescindReason,
    StatusChangeReason,
)
from humanline.domain.routing import expiry_reason, review
from humanline.domain.rules import DispatchPolicy, decide_miss
from humanline.service.events import Effects, EventHub, OfferWithdrawn, StatusUpdated
from humanline.service.metrics import Metrics
from humanline.service.transitions import (
    LostRace,
    end_known_agent_waits,
    expire_grace,
    grace_over,
    offer_earliest_work,
    offer_to_best_agent,
    replan,
    withdraw_pending_offers,
)
from humanline.store.port import Store, StoreConflict, UnitOfWork

log = structlog.get_logger("humanline.dispatcher")

STOP_TIMEOUT = 5.0  # seconds for matches under way to finish when the dispatcher stops


class Dispatcher:
    """Matching worker, timers and sweeper of one process."""

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        policy: DispatchPolicy,
        clock: Clock,
        *,
        replica_id: str,
        sweep_interval: float = 1.0,
        batch: int = 100,
        concurrency: int = 32,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._hub = hub
        self._policy = policy
        self._clock = clock
        self._replica_id = replica_id
        self.origin = replica_id[:8]  # tags this replica's hints, so it can ignore its own
        self._sweep_interval = sweep_interval
        self._batch = batch
        self._work: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._slots = asyncio.Semaphore(min(concurrency, store.background_writers or concurrency))
        self._matching: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._paused = False
        self._nudge_after: str | None = None  # where the next sweep's page of agents starts
        self._timers: list[datetime] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the matching worker and the sweeper."""
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._run_worker(), name="dispatcher-worker"),
            asyncio.create_task(self._run_sweeper(), name="dispatcher-sweeper"),
        ]

    async def stop(self) -> None:
        """Stops worker and sweeper; pending work stays in the store for the next start."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # Matches under way finish their (short) transactions rather than being cut off in
        # the middle of one; those not yet started return at once.
        if self._matching:
            _, late = await asyncio.wait(set(self._matching), timeout=STOP_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def pause(self) -> None:
        """Makes no more offers from this replica (it drains): matches not yet started are
        dropped, and the other replicas match what is queued (on their hints, or at the
        latest on their sweep's nudge). Expiries, grace periods and wait plans still run
        here until `stop`."""
        self._paused = True

    # --- transactions and their effects --------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[tuple[UnitOfWork, Effects]]:
        """A write transaction and the effects it collects. Hints for other replicas go out
        with the commit itself; local events, logs and matching follow once it has committed.
        Nothing follows a transaction that rolled back."""
        fx = Effects()
        async with self._store.write() as uow:
            yield uow, fx
            await uow.notify(fx.hints(self.origin))
        self.apply(fx)

    def apply(self, fx: Effects) -> None:
        """Publishes what a committed transaction wants known, and queues its follow-ups."""
        for agent_id, event, session_id in fx.agent_events:
            self._hub.to_agent(agent_id, event, session_id)
        for agent_id, session_id, why in fx.closed_sessions:
            self._hub.close_session(agent_id, session_id, why)
        for handoff in fx.handoffs:
            self._hub.handoff_changed(handoff)
        if fx.queue_moved:
            self._hub.queue_moved()
        if fx.policies:
            self._hub.policies_changed()
        for name, fields in fx.logs:
            log.info(name, **fields)
        if self._metrics is not None and fx.logs:
            self._metrics.record(fx.logs, fx.handoffs)
        for handoff_id in fx.match_handoffs:
            self._enqueue("handoff", handoff_id)
        for agent_id in fx.match_agents:
            self._enqueue("agent", agent_id)
        for at in fx.wake_at:
            heapq.heappush(self._timers, at)
        if fx.wake_at:
            self._wake.set()
        if fx.changes_state:
            self._hub.pool_changed()

    def _enqueue(self, kind: str, key: str) -> None:
        item = (kind, key)
        if item not in self._queued:
            self._queued.add(item)
            self._idle.clear()
            self._work.put_nowait(item)

    async def settled(self) -> None:
        """Waits until the matching worker has nothing left to do (for tests and benches)."""
        await self._idle.wait()

    # --- matching ----------------------------------------------------------------------

    async def _run_worker(self) -> None:
        while True:
            kind, key = await self._work.get()
            task = asyncio.create_task(self._match(kind, key), name=f"match-{kind}")
            self._matching.add(task)
            task.add_done_callback(self._matched)

    def _matched(self, task: asyncio.Task[None]) -> None:
        self._matching.discard(task)
        if not self._matching and self._work.empty():
            self._idle.set()

    async def _match(self, kind: str, key: str) -> None:
        async with self._slots:  # first come, first matched
            if self._stopping or self._paused:
                return
            self._queued.discard((kind, key))  # from now on, a change needs a new look
            try:
                if kind == "handoff":
                    await self._retrying(self._match_handoff, key)
                else:
                    await self._retrying(self._match_agent, key)
            except Exception:
                log.exception("matching_failed", kind=kind, id=key)

    async def _retrying(self, step: Callable[[str], Awaitable[bool]], key: str) -> None:
        """Runs a matching step until it reports nothing more to do. A lost race is simply
        tried again, on fresh data."""
        for _ in range(1000):
            try:
                if not await step(key):
                    return
            except (LostRace, StoreConflict):
                continue
        log.warning("matching_gave_up", id=key)

    async def _match_handoff(self, handoff_id: str) -> bool:
        """Offers a queued handoff to its best eligible agent. If that agent is eligible for
        an earlier-deadline handoff, that one goes first and this one is tried again."""
        async with self.transaction() as (uow, fx):
            handoff = await uow.handoffs.get(handoff_id)
            if handoff is None or handoff.state is not HandoffState.QUEUED:
                return False
            target = await offer_to_best_agent(uow, handoff, self._policy, fx)
        return target is not None and target.id != handoff.id

    async def _match_agent(self, agent_id: str) -> bool:
        """Offers an agent with a free slot the earliest-deadline handoff it can take."""
        async with self.transaction() as (uow, fx):
            agent = await uow.agents.get(agent_id)
            if agent is None or agent.state is not AgentState.AVAILABLE:
                return False
            return await offer_earliest_work(uow, agent, self._policy, fx) is not None

    # --- time ---------------------------------------------------------------------------

    async def _run_sweeper(self) -> None:
        while True:
            timeout = self._sweep_interval
            if self._timers:
                due_in = (self._timers[0] - self._clock.now()).total_seconds()
                timeout = max(0.0, min(timeout, due_in))
            # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation that
            # arrives while it times out, and stop() would wait for this task forever.
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
                self._wake.clear()
                continue  # a new timer: recompute the sleep
            except TimeoutError:
                pass
            now = self._clock.now()
            while self._timers and self._timers[0] <= now:
                heapq.heappop(self._timers)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep_failed")

    async def sweep(self) -> None:
        """Expires due offers and grace periods, moves waiting handoffs along their wait
        plans (relaxation, known agent, expiry), then, as the fallback for a lost wake-up,
        asks the ready agents to look for work while a handoff has been queued for a sweep
        interval or more: a page of them (`batch`) per sweep, each sweep the page after the
        last, so every ready agent is asked within ready/batch sweeps, at a bounded cost per
        sweep. (Every possible match involves a ready agent, so nudging the agents is enough;
        a backlog with nobody free costs two cheap queries. Handoffs queued for less are being
        matched by their wake-ups: nudging for them would repeat the matching of a busy queue
        every second for nothing.)"""
        await self._each_due(self._expire_offers)
        await self._each_due(self._expire_graces)
        await self._each_due(self._review_handoffs)
        async with self._store.read() as uow:
            ready = []
            waited = uow.now - timedelta(seconds=self._sweep_interval)
            if await uow.handoffs.queued_since(waited):
                ready = await uow.agents.page(
                    limit=self._batch,
                    after_id=self._nudge_after,
                    state=AgentState.AVAILABLE,
                    skill=None,
                )
        # A short page was the last: the next sweep starts from the first agent again.
        self._nudge_after = ready[-1].id if len(ready) == self._batch else None
        for agent in ready:
            self._enqueue("agent", agent.id)

    async def _each_due(self, step: Callable[[], Awaitable[int]]) -> None:
        while await step() >= self._batch:
            pass

    async def _expire_offers(self) -> int:
        """Expires pending offers past their time; each counts as a miss for its agent."""
        async with self._store.read() as uow:
            due = await uow.offers.due_to_expire(uow.now, self._batch)
        for offer in due:
            with contextlib.suppress(LostRace, StoreConflict):  # someone else got there first
                async with self.transaction() as (uow, fx):
                    await self._expire_offer(uow, offer.id, fx)
        return len(due)

    async def _expire_offer(self, uow: UnitOfWork, offer_id: str, fx: Effects) -> None:
        expired = await uow.offers.expire(offer_id, uow.now)
        if expired is None:
            return  # accepted, declined or rescinded meanwhile
        handoff = await uow.handoffs.return_to_queue(expired.handoff_id, expired.id)
        if handoff is None:
            raise LostRace(expired.handoff_id)
        await uow.agents.release(expired.agent_id)
        fx.changed(handoff)
        fx.match_handoff(handoff.id)
        fx.to_agent(expired.agent_id, OfferWithdrawn(expired.id, RescindReason.EXPIRED))
        fx.log(
            "offer_expired", offer_id=expired.id, handoff_id=handoff.id, agent_id=expired.agent_id
        )
        agent = await uow.agents.get(expired.agent_id)
        if agent is None:
            return
        decision = decide_miss(agent, self._policy)
        await uow.agents.set_misses(agent.id, decision.consecutive_misses)
        if decision.set_away:
            await uow.agents.set_status(
                agent.id, AgentStatus.AWAY, StatusChangeReason.MISSED_OFFERS, reset_misses=True
            )
            await withdraw_pending_offers(uow, agent.id, RescindReason.AGENT_AWAY, fx)
            await end_known_agent_waits(uow, agent.id, fx)
            fx.to_agent(agent.id, StatusUpdated(AgentStatus.AWAY, StatusChangeReason.MISSED_OFFERS))
            fx.log("agent_set_away", agent_id=agent.id, reason="missed_offers")
        else:
            fx.match_agent(agent.id)

    async def _review_handoffs(self) -> int:
        """Applies what is due of queued handoffs' wait plans: relaxation steps widen who may
        take them (and they are matched again), the wait for a known agent ends, and those
        past their maximum wait end EXPIRED. (An offered handoff waits for its offer's
        answer; should the offer come back, the next sweep reviews it.)"""
        async with self._store.read() as uow:
            due = await uow.handoffs.due_for_review(uow.now, self._batch)
        for handoff in due:
            with contextlib.suppress(LostRace, StoreConflict):  # changed meanwhile
                async with self.transaction() as (uow, fx):
                    await self._review_handoff(uow, handoff.id, fx)
        return len(due)

    async def _review_handoff(self, uow: UnitOfWork, handoff_id: str, fx: Effects) -> None:
        handoff = await uow.handoffs.get(handoff_id)
        if handoff is None or handoff.state is not HandoffState.QUEUED:
            return
        now = uow.now
        due = review(handoff, now)
        if due.expired:
            request = handoff.request
            supply = await uow.agents.supply_for(request.required_skills, request.language)
            reason = expiry_reason(handoff, supply.agents, now)
            expired = await uow.handoffs.expire(handoff.id, now, reason)
            if expired is None:
                raise LostRace(handoff.id)
            await uow.rollups.record_final(handoff.id)
            fx.changed(expired, moved=True)
            fx.log(
                "handoff_expired",
                handoff_id=handoff.id,
                interaction_type=request.interaction_type,
                waited_seconds=round((now - handoff.created_at).total_seconds(), 3),
                eligible_online=supply.agents,
            )
            return
        await replan(uow, handoff, due, fx)

    async def _expire_graces(self) -> int:
        """Ends sessions whose grace period ran out: the agent goes offline, its accepted
        interactions return to the queue."""
        async with self._store.read() as uow:
            due = await uow.sessions.grace_expired(uow.now, self._batch)
        for session in due:
            with contextlib.suppress(LostRace, StoreConflict):  # resumed or ended meanwhile
                async with self.transaction() as (uow, fx):
                    current = await uow.sessions.get(session.id)
                    if current is not None and grace_over(current, uow):
                        await expire_grace(uow, current, fx)
        return len(due)
