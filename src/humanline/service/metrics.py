"""Prometheus metrics: what happened (from committed transactions), the pool, and the RPCs.

Counters and the wait histograms are fed from one place, `Dispatcher.apply`: the logs of a
committed transaction (`Effects.logs`) say what happened, its handoff snapshots say to which
interaction type. A rolled-back transaction counts nothing, as it logs nothing. They count
what this replica committed: sum them over replicas.

The gauges (queue depth by type and by urgency, agents by state) describe the whole store,
read by `MetricsEndpoint` every `refresh` seconds on the event loop (one snapshot read, as
GetPoolStatus does): every replica reports the same numbers, so take their max, not sum.
A scrape only reads memory; it never touches the store.

Interaction types are the callers' strings: the first `MAX_TYPES` distinct ones seen get a
label value of their own, any later one is counted as `other`, so a bot inventing types
cannot grow the exposition without bound.

RPC latency and errors are recorded at each call's boundary (`humanline.grpc.errors.
call_boundary`, under the `unary` and `server_stream` decorators and the agents' Connect)
through `observe_rpc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from humanline.config import parse_listen
from humanline.domain.model import AgentState, Handoff, Outcome, Urgency
from humanline.store.port import PoolSnapshot, Store

log = structlog.get_logger("humanline.metrics")

MAX_TYPES = 100
OTHER = "other"
UNKNOWN = "unknown"

OFFER_RESULTS = {
    "offer_sent": "sent",
    "offer_accepted": "accepted",
    "offer_declined": "declined",
    "offer_expired": "expired",
    "offer_rescinded": "rescinded",
}
ENDINGS = {"handoff_cancelled": "cancelled", "handoff_expired": "expired"}
OUTCOMES = [o.value.lower() for o in Outcome] + list(ENDINGS.values())

# Seconds a customer waits: from a fraction of a second to an hour.
WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LabelCap:
    """Label values for caller-chosen strings: the first `limit` distinct ones, then
    `other`."""

    def __init__(self, limit: int = MAX_TYPES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


class PoolCollector(Collector):
    """The gauges of the last pool snapshot (swapped in whole: a scrape sees one reading)."""

    def __init__(self, types: LabelCap) -> None:
        self._types = types
        self.snapshot: PoolSnapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        by_type = GaugeMetricFamily(
            "humanline_queue_depth",
            "Handoffs waiting (queued or offered), by interaction type",
            labels=["interaction_type"],
        )
        by_urgency = GaugeMetricFamily(
            "humanline_queue_depth_by_urgency",
            "Handoffs waiting (queued or offered), by urgency",
            labels=["urgency"],
        )
        agents = GaugeMetricFamily(
            "humanline_agents", "Agents by state (not deleted)", labels=["state"]
        )
        if snapshot is not None:
            depth: dict[str, int] = {}
            for interaction_type, count in snapshot.queue_by_type.items():
                label = self._types(interaction_type)
                depth[label] = depth.get(label, 0) + count
            for label, count in sorted(depth.items()):
                by_type.add_metric([label], count)
            for urgency in Urgency:
                by_urgency.add_metric([urgency.name], snapshot.queue_by_urgency.get(urgency, 0))
            for state in AgentState:
                agents.add_metric([state.value], snapshot.agents_by_state.get(state, 0))
        yield by_type
        yield by_urgency
        yield agents

    def describe(self) -> Iterable[Metric]:
        return []  # known only once collected; nothing to check at registration


class StoreCollector(Collector):
    """The store's own counts, read from it at each scrape."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        trips = CounterMetricFamily(
            "humanline_store_round_trips",
            "Requests this replica sent its database and waited on (PostgreSQL: statements,"
            " BEGIN, COMMIT, preparing; SQLite: statements, BEGIN and COMMIT)",
        )
        trips.add_metric([], self._store.round_trips.total)
        yield trips

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    """One service's metrics, in a registry of its own (several services in one process,
    as in the tests, do not share counters)."""

    def __init__(self, *, max_types: int = MAX_TYPES) -> None:
        self.registry = CollectorRegistry()
        self._types = LabelCap(max_types)
        r = self.registry
        self.handoffs_requested = Counter(
            "humanline_handoffs_requested",
            "Handoffs requested (new ones, not idempotent repeats)",
            ["interaction_type", "urgency"],
            registry=r,
        )
        self.handoffs_ended = Counter(
            "humanline_handoffs_ended",
            "Handoffs ended: completed with an outcome, cancelled or expired",
            ["interaction_type", "outcome"],
            registry=r,
        )
        self.handoffs_requeued = Counter(
            "humanline_handoffs_requeued",
            "Accepted handoffs returned to the queue (their agent's session ended)",
            registry=r,
        )
        self.offers = Counter(
            "humanline_offers", "Offers made and their results", ["result"], registry=r
        )
        for result in OFFER_RESULTS.values():
            self.offers.labels(result)
        self.time_to_offer = Histogram(
            "humanline_time_to_offer_seconds",
            "From the request to each offer of the handoff",
            ["interaction_type"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.time_to_agent = Histogram(
            "humanline_time_to_agent_seconds",
            "From the request to the agent's accept",
            ["interaction_type"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.rpc_duration = Histogram(
            "humanline_rpc_duration_seconds",
            "Unary RPC handling time, errors included",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "humanline_rpc_errors",
            "RPCs (streams included) that ended with a status other than OK",
            ["method", "code"],
            registry=r,
        )
        self.quality_check = Histogram(
            "humanline_quality_check_seconds",
            "Early-warning checks: reading the window and its baseline, and judging them",
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.pool = PoolCollector(self._types)
        r.register(self.pool)

    def record(self, logs: list[tuple[str, dict[str, Any]]], handoffs: list[Handoff]) -> None:
        """Counts what a committed transaction did (its `Effects` logs and handoffs)."""
        types = {h.id: h.request.interaction_type for h in handoffs}

        def kind(fields: dict[str, Any]) -> str:
            given = fields.get("interaction_type") or types.get(fields.get("handoff_id", ""))
            return UNKNOWN if given is None else self._types(given)

        for name, fields in logs:
            result = OFFER_RESULTS.get(name)
            if result is not None:
                self.offers.labels(result).inc()
                waited = fields.get("waited_seconds")
                if name == "offer_sent" and waited is not None:
                    self.time_to_offer.labels(kind(fields)).observe(waited)
                elif name == "offer_accepted" and waited is not None:
                    self.time_to_agent.labels(kind(fields)).observe(waited)
            elif name == "handoff_queued":
                self.handoffs_requested.labels(kind(fields), fields["urgency"]).inc()
            elif name == "interaction_completed":
                self.handoffs_ended.labels(kind(fields), str(fields["outcome"]).lower()).inc()
            elif name in ENDINGS:
                self.handoffs_ended.labels(kind(fields), ENDINGS[name]).inc()
            elif name == "handoff_requeued":
                self.handoffs_requeued.inc()

    def observe_rpc(self, method: str, seconds: float | None, code: str) -> None:
        """One RPC: its duration (unary calls; None for streams) and its status code name."""
        if seconds is not None:
            self.rpc_duration.labels(method).observe(seconds)
        if code != "OK":
            self.rpc_errors.labels(method, code).inc()


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (prometheus_client's own server, on a thread of
    its own), and the task that refreshes the pool gauges on the event loop."""

    def __init__(self, metrics: Metrics, store: Store, *, refresh: float = 5.0) -> None:
        self._metrics = metrics
        self._store = store
        self._refresh = refresh
        metrics.registry.register(StoreCollector(store))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        self.read_at: datetime | None = None  # when the pool gauges were last read

    async def start(self, listen: str) -> None:
        """Serves /metrics on `listen` (host:port; port 0 picks a free one). OSError when the
        address cannot be bound."""
        host, port = parse_listen(listen)
        await self.read_pool()
        self._server, self._thread = start_http_server(port, host, registry=self._metrics.registry)
        self.port = int(self._server.server_port)
        self._task = asyncio.create_task(self._run(), name="metrics-refresh")
        log.info("metrics_serving", listen=f"{listen.rpartition(':')[0]}:{self.port}")

    async def read_pool(self) -> None:
        """Reads the pool's snapshot into the gauges."""
        async with self._store.read(snapshot=True) as uow:
            snapshot = await uow.pool.snapshot()
            self.read_at = uow.now
        self._metrics.pool.snapshot = snapshot

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.read_pool()
            except Exception:
                log.exception("metrics_refresh_failed")

    async def stop(self) -> None:
        """Stops the refresh and the HTTP server."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
