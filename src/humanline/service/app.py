"""`Humanline`: the use cases wired to one store, one event hub and one dispatcher."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

import structlog

from humanline.domain.clock import Clock, SystemClock
from humanline.domain.routing import RoutingPolicy
from humanline.domain.rules import DispatchPolicy
from humanline.service.agents import AgentSessions
from humanline.service.dispatcher import Dispatcher
from humanline.service.events import EventHub
from humanline.service.handoffs import Handoffs
from humanline.service.metrics import Metrics
from humanline.service.policies import PolicyCache, RoutingPolicies
from humanline.service.pool import Pool
from humanline.service.pool_watch import PoolFeed
from humanline.service.quality import QualityMonitor
from humanline.service.replicas import ReplicaCoordinator
from humanline.service.retention import Pruner, RetentionPolicy, Vacuumer
from humanline.store.port import Store

log = structlog.get_logger("humanline")
STREAM_CLOSE_TIMEOUT = 10.0
DRAIN_TIMEOUT = 10.0  # for handing the agents over; the rest is closed as drops


class Humanline:
    """The dispatch service without its transport: start it, use it, stop it."""

    def __init__(
        self,
        store: Store,
        policy: DispatchPolicy | None = None,
        *,
        clock: Clock | None = None,
        replica_id: str | None = None,
        sweep_interval: float = 1.0,
        watch_interval: float = 0.5,
        replica_heartbeat: float = 2.0,
        replica_ttl: float = 6.0,
        routing_policies: Sequence[RoutingPolicy] = (),
        quality_window: timedelta = timedelta(days=1),
        quality_check_interval: float = 30.0,
        pool_watch_tick: float = 5.0,
        retention: RetentionPolicy | None = None,
        prune_interval: float = 60.0,
        vacuum_interval: float = 30.0,
        policy_max_age: float = 5.0,
    ) -> None:
        self.store = store
        self.policy = policy or DispatchPolicy()
        self.clock = clock or SystemClock()
        self.replica_id = replica_id or str(uuid.uuid4())
        self.hub = EventHub()
        self.metrics = Metrics()  # served over HTTP only when asked (`MetricsEndpoint`)
        self.dispatcher = Dispatcher(
            store,
            self.hub,
            self.policy,
            self.clock,
            replica_id=self.replica_id,
            sweep_interval=sweep_interval,
            metrics=self.metrics,
        )
        self.sessions = AgentSessions(
            store, self.dispatcher, self.hub, self.policy, replica_id=self.replica_id
        )
        self.policy_cache = PolicyCache(store, max_age=policy_max_age)
        self.hub.on_policies_changed(self.policy_cache.changed)
        self.handoffs = Handoffs(
            store,
            self.dispatcher,
            self.hub,
            self.policy,
            self.policy_cache,
            watch_interval=watch_interval,
        )
        self.retention = retention or RetentionPolicy()
        self.pool = Pool(store, self.dispatcher, self.retention)
        self.pruner = Pruner(store, self.retention, interval=prune_interval)
        self.vacuumer = Vacuumer(store, interval=vacuum_interval)
        self.pool_feed = PoolFeed(store, self.hub, tick=pool_watch_tick)
        self.quality = QualityMonitor(
            store,
            window=quality_window,
            check_interval=quality_check_interval,
            metrics=self.metrics,
        )
        self.hub.on_outcome(self.quality.outcome)
        self.policies = RoutingPolicies(store, self.dispatcher, routing_policies)
        self.replicas = ReplicaCoordinator(
            store,
            self.hub,
            self.dispatcher,
            self.policy,
            replica_id=self.replica_id,
            heartbeat_interval=replica_heartbeat,
            ttl=replica_ttl,
            poll_interval=sweep_interval,
        )

    async def start(self) -> None:
        """Opens (and migrates) the store, joins the replicas (recovering dead ones), starts
        matching."""
        await self.store.open(writer=self.dispatcher.origin)
        await self.policies.apply_file()
        await self.replicas.start()
        await self.dispatcher.start()
        self.quality.start()
        self.pool_feed.start()
        self.pruner.start()
        self.vacuumer.start()
        log.info("service_started", replica_id=self.replica_id)

    @property
    def draining(self) -> bool:
        """True once `drain` has begun: new agent streams are refused."""
        return self.hub.draining

    async def drain(self) -> None:
        """The first step of a graceful stop, while the gRPC server still serves calls: this
        replica makes no more offers, and its agents are handed over to the other replicas
        (`AgentSessions.drain`). Unary calls go on as before. Whatever is not handed over
        within DRAIN_TIMEOUT (a store that does not answer) is closed by `stop`, as a drop."""
        self.dispatcher.pause()
        log.info("drain_started", replica_id=self.replica_id, agents=self.hub.agent_streams)
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                handed = await self.sessions.drain()
        except TimeoutError:
            log.warning("drain_timed_out", agents_left=self.hub.agent_streams)
            return
        log.info("drain_finished", replica_id=self.replica_id, agents_handed_over=handed)

    async def stop(self) -> None:
        """Ends agent streams (their sessions enter the grace period, so agents can resume
        on the next start or another replica), records the drops, stops matching, closes the
        store. Queued and assigned work stays stored."""
        self.hub.shutdown()
        try:
            async with asyncio.timeout(STREAM_CLOSE_TIMEOUT):
                await self.hub.agents_gone()
        except TimeoutError:
            log.warning("agent_streams_still_open", count=self.hub.agent_streams)
        await self.sessions.drained()
        await self.handoffs.stop()
        await self.quality.stop()
        await self.pool_feed.stop()
        await self.pruner.stop()
        await self.vacuumer.stop()
        await self.dispatcher.stop()
        await self.replicas.stop()
        await self.store.close()
        log.info("service_stopped", replica_id=self.replica_id)
