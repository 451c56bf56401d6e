"""Replicas: liveness on the database's clock, recovery of dead ones, hints between them.

Each replica registers a row and heartbeats it (the store's `now`, so the database's clock on
PostgreSQL). Any live replica declares a replica dead once it has been silent for the TTL and
recovers its sessions: their streams are gone, so their pending offers go back to the queue
and their grace period starts; their agents resume on another replica with their work, or go
offline when the grace period ends, exactly as after a drop on one replica. On the embedded
store the process is alone by construction (file lock), so every other replica on record is
dead at start.

Hints from other replicas (`a:<agent>`, `h:<handoff>`, `q`) arrive on the store's listener;
as they can be lost, the change feed is also polled at least once a second, and after the
listener reconnects every local stream looks at the store again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import datetime, timedelta

import structlog

from humanline.domain.rules import DispatchPolicy
from humanline.service.dispatcher import Dispatcher
from humanline.service.events import Effects, EventHub
from humanline.service.transitions import LostRace, retry_conflicts, start_grace
from humanline.store.port import Store, StoreConflict, StoreError, UnitOfWork

log = structlog.get_logger("humanline.replicas")

# A transaction stamps its rows with its start time and may commit long after a poll has
# moved past that time, so each poll looks again from the start of the oldest transaction
# still open at the previous one (`oldest_transaction_start`), and this much earlier still,
# for a database that cannot tell (one where the replicas' sessions are not visible).
POLL_OVERLAP = timedelta(seconds=2)


class ReplicaCoordinator:
    """This replica's membership: heartbeat, reaping, hints in, change-feed polling."""

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        dispatcher: Dispatcher,
        policy: DispatchPolicy,
        *,
        replica_id: str,
        heartbeat_interval: float = 2.0,
        ttl: float = 6.0,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._hub = hub
        self._dispatcher = dispatcher
        self._policy = policy
        self.replica_id = replica_id
        self._heartbeat_interval = heartbeat_interval
        self._ttl = timedelta(seconds=ttl)
        self._poll_interval = poll_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._listener = store.listener(self._on_hint, hub.reset)

    async def start(self) -> None:
        """Registers this replica, recovers the dead ones, starts heartbeat, listener, poll."""
        async with self._store.write() as uow:
            await uow.replicas.register(self.replica_id, socket.gethostname(), os.getpid())
        # Alone on the database (SQLite): everyone else on record is dead, now.
        await self.reap(everyone_else=self._store.exclusive)
        self._tasks.append(asyncio.create_task(self._run_heartbeat(), name="replica-heartbeat"))
        if self._listener is not None:
            self._tasks.append(asyncio.create_task(self._listener.run(), name="replica-listener"))
        if not self._store.exclusive:
            self._tasks.append(asyncio.create_task(self._run_reaper(), name="replica-reaper"))
            self._tasks.append(asyncio.create_task(self._run_poll(), name="replica-poll"))

    async def stop(self) -> None:
        """Stops the loops and records a graceful stop (so no one needs to reap this one)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(StoreError):
            async with self._store.write() as uow:
                await uow.replicas.stop(self.replica_id)

    # --- liveness -------------------------------------------------------------------------

    async def _run_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self.heartbeat()
            except StoreError as exc:
                log.warning("replica_heartbeat_failed", error=str(exc))

    async def _run_reaper(self) -> None:
        """Apart from the heartbeat: recovering a dead replica's sessions may take a while
        (many sessions, row locks), and must not make this replica look dead too."""
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self.reap()
            except StoreError as exc:
                log.warning("replica_reaping_failed", error=str(exc))

    async def heartbeat(self) -> None:
        """Marks this replica alive. If others declared it dead meanwhile (a long pause), it
        takes its place again and every stream here checks whether it still owns its
        session: the others gave those sessions a grace period, so the agents resume."""
        async with self._store.write() as uow:
            alive = await uow.replicas.heartbeat(self.replica_id)
            if not alive:
                await uow.replicas.revive(self.replica_id)
        if not alive:
            log.error("replica_was_declared_dead", replica_id=self.replica_id)
            self._hub.reset()

    @retry_conflicts
    async def reap(self, *, everyone_else: bool = False) -> list[str]:
        """Declares silent replicas dead and recovers their sessions; returns their ids.

        One transaction: a replica that was only paused and heartbeats again meanwhile waits
        for it (the row lock on its replica row), so when it learns that it was declared dead
        its sessions are already in their grace period, and its streams see that."""
        async with self._dispatcher.transaction() as (uow, fx):
            silent_since = uow.now + timedelta(days=1) if everyone_else else uow.now - self._ttl
            dead = await uow.replicas.reap(silent_since, keep=self.replica_id)
            for replica_id in dead:
                await self._recover(uow, fx, replica_id)
        for replica_id in dead:
            log.warning("replica_declared_dead", replica_id=replica_id, by=self.replica_id)
        return dead

    async def _recover(self, uow: UnitOfWork, fx: Effects, replica_id: str) -> None:
        """The dead replica's streams are gone: each of its sessions starts its grace period,
        and its pending offers go back to the queue."""
        for session in await uow.sessions.connected_on(replica_id):
            with contextlib.suppress(LostRace):  # resumed elsewhere meanwhile
                await start_grace(
                    uow, session, session.connection_id, self._policy, fx, reason="replica_gone"
                )

    # --- hints ----------------------------------------------------------------------------

    def _on_hint(self, payload: str) -> None:
        origin, _, hint = payload.partition("/")
        if origin == self._dispatcher.origin:
            return  # our own transaction: already published here
        kind, _, key = hint.partition(":")
        if kind == "a":
            self._hub.hint_agent(key)
        elif kind == "h":
            self._hub.hint_handoff(key)
            self._hub.queue_moved()
        elif kind == "q":
            self._hub.queue_moved()
        elif kind == "r":
            self._hub.policies_changed()
        elif kind == "p":
            self._hub.pool_changed()

    async def _run_poll(self) -> None:
        """The fallback for lost hints: rows changed since the last look, for local streams."""
        async with self._store.read() as uow:
            since = uow.now
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                since = await self.poll(since)
            except (StoreError, StoreConflict) as exc:
                log.warning("change_poll_failed", error=str(exc))

    async def poll(self, since: datetime) -> datetime:
        """Hints local streams about rows changed since `since`; returns the next `since`: now,
        or the start of the oldest transaction still open, whose rows may not be visible yet."""
        agents, watched = self._hub.local_agents(), self._hub.watched_handoffs()
        async with self._store.read() as uow:
            # Before the changes are read: what commits later began after this, or is open now.
            oldest = await uow.replicas.oldest_transaction_start()
            upto = min(uow.now, oldest) if oldest is not None else uow.now
            start = since - POLL_OVERLAP
            changed_agents = await uow.agents.changed_since(start) if agents else []
            changed_handoffs = await uow.handoffs.changed_since(start)
        for agent_id in set(changed_agents) & agents:
            self._hub.hint_agent(agent_id)
        for handoff_id in set(changed_handoffs) & watched:
            self._hub.hint_handoff(handoff_id)
        if changed_handoffs:
            self._hub.queue_moved()
        return upto
