"""`humanline bench` (and `make bench`): measures humanline against the ceiling of a bare
grpc.aio service on the same machine, in one run, and writes the results as JSON.

Every phase gets a fresh server process on a free port (`humanline serve` on a new SQLite file,
or on a new PostgreSQL database with a unique name that is dropped afterwards) and the same
number of client processes (spawned), so that humanline and the echo ceiling are measured with
the same process layout. The phases, in order:

1. lifecycles, per backend: bots in a closed loop, each requesting a handoff and waiting until
   an agent completed it; agents twice as many as bots, so the service and not the pool is the
   limit. Lifecycles completed in the window after the warm-up, per second; and the store's
   round trips per lifecycle (from the server's `/metrics`, over the whole run: its
   background work included).
2. echo: the same concurrency of unary calls to an echo service, with requests and responses
   of the mean sizes of the RequestHandoff messages phase 1 sent and received.
   bare: phase 1 against a server with humanline's RPCs and nothing behind them (`bare`):
   the ceiling of a whole lifecycle on grpc.aio and protobuf.
3. time to offer, per backend: handoffs at a fixed rate (evenly spaced, an open loop) with idle
   agents waiting; from just before RequestHandoff to the offer on the agent's stream.
4. streams (SQLite): for each count, that many agents connected and idle (heartbeating) in
   one server process; its memory, then time to offer at a modest rate. Then the same against
   the bare RPCs (`bare`), which shows what so many streams cost grpc.aio itself.

The client's counts are held against the events the server logged (`runs` in the results).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from humanline.bench import echo, postgres, report, system
from humanline.bench.clients import FINISH_TIMEOUT, BenchError, Fleet, Job
from humanline.bench.load import percentile_with_missing
from humanline.domain.quality import percentile
from humanline.sim.demo import LocalServer, ServerError, free_port, local_server
from humanline.tokens import KeyRing

RPC_EQUIVALENTS_PER_LIFECYCLE = 4
"""What one lifecycle costs in unary-call equivalents: RequestHandoff (unary), the offer (a
message on the agent's stream), accept_offer answered by assignment_confirmed (a round trip on
the stream), CompleteInteraction (unary)."""

BACKENDS = ("sqlite", "postgres")
ROUND_TRIPS_METRIC = "humanline_store_round_trips_total"
START_SECONDS = 1.0  # between telling the clients to run and their first request
SETTLE_SECONDS = 2.0  # after the last agent's welcome, before reading the server's memory
STOP_TIMEOUT = 60.0  # for a server to stop after SIGTERM (its log must be complete)
# With thousands of sessions to record as dropped, a server takes long to stop; nothing is
# read from its log afterwards, so it is killed sooner.
STREAMS_STOP_TIMEOUT = 15.0
READY_TIMEOUT = 120.0  # for creating and connecting agents, plus per agent:
READY_SECONDS_PER_AGENT = 0.06


@dataclass(frozen=True)
class Options:
    """What to measure, and how long."""

    backends: tuple[str, ...] = BACKENDS
    postgres_url: str = postgres.DEFAULT_SERVER
    streams: tuple[int, ...] = (1000, 5000, 10000)
    processes: int = 2  # client processes in every phase
    concurrency: int = 32  # bots (lifecycles) or calls (echo) in flight per client process
    offer_agents: int = 100  # idle agents per client process for time to offer
    warmup: float = 2.0
    duration: float = 10.0  # seconds counted (closed loops) or of arrivals (open loops)
    drain: float = 30.0  # seconds at most for work in flight at the end of a phase
    rate: float = 200.0  # handoffs per second for time to offer
    streams_rate: float = 50.0  # handoffs per second for time to offer with many streams

    def settings(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "concurrency_per_process": self.concurrency,
            "lifecycle_agents_per_process": 2 * self.concurrency,
            "offer_agents_per_process": self.offer_agents,
            "warmup_s": self.warmup,
            "duration_s": self.duration,
            "drain_s": self.drain,
            "time_to_offer_rate": self.rate,
            "streams_rate": self.streams_rate,
            "arrivals": "evenly spaced",
            "streams_backend": "sqlite",
        }


QUICK = Options(
    streams=(100,),
    concurrency=8,
    offer_agents=20,
    warmup=0.5,
    duration=2.0,
    drain=10.0,
)
"""Shorter runs and small numbers, for a look (and the bench's own tests)."""


@dataclass
class Results:
    """The results as they are being measured; `to_json()` is the file's content."""

    options: Options
    machine: dict[str, object] = field(default_factory=system.machine)  # at the start
    echo_unary_rps: float | None = None
    bare_lifecycles_per_s: float | None = None
    message_bytes: dict[str, int] | None = None
    lifecycles_per_s: dict[str, float | None] = field(default_factory=dict)
    round_trips_per_lifecycle: dict[str, float | None] = field(default_factory=dict)
    time_to_offer_ms: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    bare_time_to_offer_ms: dict[str, Any] | None = None  # the same load on the bare RPCs
    streams: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    failed: bool = False

    def lifecycle_ratio(self) -> dict[str, float | None]:
        return {
            backend: (
                None
                if rate is None or not self.echo_unary_rps
                else round(rate * RPC_EQUIVALENTS_PER_LIFECYCLE / self.echo_unary_rps, 4)
            )
            for backend, rate in self.lifecycles_per_s.items()
        }

    def bare_ratio(self) -> dict[str, float | None]:
        return {
            backend: (
                None
                if rate is None or not self.bare_lifecycles_per_s
                else round(rate / self.bare_lifecycles_per_s, 4)
            )
            for backend, rate in self.lifecycles_per_s.items()
        }

    def time_to_offer_bare_ratio(self) -> dict[str, float | None]:
        """Each store's time to offer p99 over the bare RPCs' at the same rate."""
        bare = None if self.bare_time_to_offer_ms is None else self.bare_time_to_offer_ms["p99"]
        return {
            backend: (
                None
                if offer is None or offer["p99"] is None or not bare
                else round(offer["p99"] / bare, 2)
            )
            for backend, offer in self.time_to_offer_ms.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.options.settings(),
            "message_bytes": self.message_bytes,
            "echo_unary_rps": self.echo_unary_rps,
            "rpc_equivalents_per_lifecycle": RPC_EQUIVALENTS_PER_LIFECYCLE,
            "lifecycles_per_s": self.lifecycles_per_s,
            "lifecycle_ratio": self.lifecycle_ratio(),
            "bare_lifecycles_per_s": self.bare_lifecycles_per_s,
            "bare_ratio": self.bare_ratio(),
            "round_trips_per_lifecycle": self.round_trips_per_lifecycle,
            "time_to_offer_ms": self.time_to_offer_ms,
            "bare_time_to_offer_ms": self.bare_time_to_offer_ms,
            "time_to_offer_bare_ratio": self.time_to_offer_bare_ratio(),
            "streams": self.streams,
            "goals": report.GOALS,
            "notes": self.notes,
            "runs": self.runs,
        }


def run(options: Options, say: Callable[[str], None]) -> Results:
    """Runs every phase; a phase that fails leaves its numbers null, says why in `notes`
    and sets `failed`. An unreachable PostgreSQL is a note, not a failure."""
    with tempfile.TemporaryDirectory(prefix="humanline-bench-") as workdir:
        return _Bench(options, Path(workdir), say).run()


def server_events(log: Path) -> Counter[str]:
    """How often the server logged each event (its JSON lines)."""
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError, AttributeError):
                counts[str(json.loads(line).get("event"))] += 1
    return counts


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _said(ms: float | None) -> str:
    return "unknown" if ms is None else f"{ms:,.1f} ms"


def _merge(parts: list[dict[str, Any]], key: str) -> dict[str, int]:
    merged: Counter[str] = Counter()
    for part in parts:
        merged.update(part.get(key, {}))
    return dict(merged)


class _Bench:
    def __init__(self, options: Options, workdir: Path, say: Callable[[str], None]) -> None:
        self.options = options
        self.workdir = workdir
        self.say = say
        self.results = Results(options)
        self.unreachable: str | None = None
        self.servers = 0
        self.metrics_port = 0  # the humanline server's of the phase under way
        # Every server's keyring; the clients sign their tokens with it.
        self.keys = workdir / "keys.json"
        KeyRing.generate().save(self.keys)

    def run(self) -> Results:
        o, r = self.options, self.results
        for backend in o.backends:
            r.lifecycles_per_s[backend] = None
            self._phase(f"lifecycles {backend}", partial(self._lifecycles, backend))
        if r.message_bytes is None:
            r.notes["echo"] = "not measured: no lifecycle run gave the message sizes"
        else:
            self._phase("echo", self._echo)
        self._phase("lifecycles bare", self._bare)
        for backend in o.backends:
            r.time_to_offer_ms[backend] = None
            self._phase(f"time to offer {backend}", partial(self._time_to_offer, backend))
        self._phase("time to offer bare", self._time_to_offer_bare)
        for n in o.streams:
            r.streams[str(n)] = None
            self._phase(f"streams {n}", partial(self._streams, n))
        return r

    def _phase(self, name: str, body: Callable[[], None]) -> None:
        if name.endswith("postgres") and self.unreachable is not None:
            return
        self.say(f"{name} ...")
        try:
            body()
        except postgres.Unreachable as exc:
            self.unreachable = str(exc)
            self.results.notes["postgres"] = f"not measured: PostgreSQL at {exc}"
            self.say(f"  PostgreSQL at {exc}: its entries stay null")
        except (BenchError, ServerError, OSError) as exc:
            self.results.failed = True
            self.results.notes[name] = f"failed: {exc}"
            self.say(f"  failed: {exc}")

    # --- servers ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _humanline(self, backend: str, stop_timeout: float = STOP_TIMEOUT) -> Iterator[LocalServer]:
        """`humanline serve` on a fresh database; the database is dropped afterwards."""
        self.servers += 1
        name = f"server-{self.servers}"
        pg = self.options.postgres_url
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.workdir / name}.db"
        else:
            url = asyncio.run(postgres.create_database(pg, "humanline_bench"))
        self.metrics_port = free_port()
        settings = {
            "HUMANLINE_DATABASE_URL": url,
            "HUMANLINE_AUTH_KEYS": str(self.keys),
            "HUMANLINE_LOG_FORMAT": "json",
            "HUMANLINE_LOG_LEVEL": "info",
            "HUMANLINE_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
            # The bench's few client processes play every bot and agent from one address, far
            # above one real caller's rate: the limits stay checked on every call, too high
            # to trip. They have tests of their own.
            "HUMANLINE_RATE_LIMIT_PER_SECOND": "1000000",
            "HUMANLINE_RATE_LIMIT_BURST": "1000000",
            "HUMANLINE_MAX_STREAMS_PER_PEER": "1000000",
        }
        try:
            with local_server(
                self.workdir / f"{name}.log", settings, cwd=self.workdir, stop_timeout=stop_timeout
            ) as server:
                yield server
        finally:
            if backend == "postgres":
                try:
                    asyncio.run(postgres.drop_database(pg, url))
                except postgres.Unreachable as exc:
                    self.results.notes[f"{name} database"] = str(exc)

    @contextlib.contextmanager
    def _bare_server(self, stop_timeout: float = STOP_TIMEOUT) -> Iterator[LocalServer]:
        """The bare RPCs (`bare`), the lifecycle ceiling."""
        self.servers += 1
        log = self.workdir / f"server-{self.servers}-bare.log"
        command = (sys.executable, "-m", "humanline.bench.bare")
        with local_server(
            log, {}, command=command, cwd=self.workdir, stop_timeout=stop_timeout
        ) as server:
            yield server

    def _fleet(self, jobs: list[Job], agents: int) -> tuple[Fleet, list[dict[str, Any]]]:
        fleet = Fleet(jobs)
        try:
            ready = fleet.collect(
                "ready",
                READY_TIMEOUT + READY_SECONDS_PER_AGENT * agents,
                "creating and connecting agents",
            )
        except BaseException:
            fleet.close()
            raise
        connected = sum(part.get("connected", 0) for part in ready)
        if agents and connected < agents:
            errors = _merge(ready, "errors")
            fleet.close()
            raise BenchError(f"only {connected} of {agents} agents connected: {errors}")
        return fleet, ready

    def _go(self, fleet: Fleet, seconds: float, doing: str) -> list[dict[str, Any]]:
        fleet.tell("run", time.time() + START_SECONDS)
        # The clients wait for the drain, then up to FINISH_TIMEOUT for calls in flight and
        # again for accepts and completions.
        limit = START_SECONDS + seconds + self.options.drain + 2 * FINISH_TIMEOUT + 30
        return fleet.collect("result", limit, doing)

    # --- phases -------------------------------------------------------------------------------

    def _lifecycle_jobs(self, target: str) -> list[Job]:
        o = self.options
        tag = uuid.uuid4().hex[:6]
        return [
            Job(
                "lifecycles",
                target,
                i,
                tag,
                agents=2 * o.concurrency,
                concurrency=o.concurrency,
                warmup=o.warmup,
                duration=o.duration,
                drain=o.drain,
                keys=str(self.keys),
            )
            for i in range(o.processes)
        ]

    def _run_lifecycles(
        self, jobs: list[Job], round_trips: Callable[[], float] | None = None
    ) -> tuple[list[dict[str, Any]], float | None]:
        """The clients' results, and the round trips `round_trips` counted meanwhile (from
        when every agent was ready to the last completion)."""
        o = self.options
        fleet, _ = self._fleet(jobs, sum(j.agents for j in jobs))
        with fleet:
            before = None if round_trips is None else round_trips()
            parts = self._go(fleet, o.warmup + o.duration, "running lifecycles")
            after = None if round_trips is None else round_trips()
        return parts, None if before is None or after is None else after - before

    def _round_trips(self) -> float:
        """The store's round trips so far, from the server's `/metrics`."""
        return system.metrics(self.metrics_port)[ROUND_TRIPS_METRIC]

    def _lifecycles(self, backend: str) -> None:
        o, r = self.options, self.results
        with self._humanline(backend) as server:
            jobs = self._lifecycle_jobs(server.target)
            parts, trips = self._run_lifecycles(jobs, self._round_trips)
        events = server_events(server.log)
        counted = sum(p["counted"] for p in parts)
        rate = round(counted / o.duration, 2)
        r.lifecycles_per_s[backend] = rate
        lifecycles = sum(p["lifecycles"] for p in parts)
        r.round_trips_per_lifecycle[backend] = (
            round(trips / lifecycles, 2) if trips is not None and lifecycles else None
        )
        durations = [d for p in parts for d in p["durations"]]
        queued = sum(p["queued"] for p in parts)
        if r.message_bytes is None and queued:
            r.message_bytes = {
                key: round(sum(p["message_bytes"][key] * p["queued"] for p in parts) / queued)
                for key in ("request", "response")
            }
        r.runs[f"lifecycles {backend}"] = {
            "bots": o.processes * o.concurrency,
            "agents": sum(j.agents for j in jobs),
            "window_s": o.duration,
            "counted": counted,
            "lifecycles": sum(p["lifecycles"] for p in parts),
            "queued": queued,
            "completed": sum(p["completed"] for p in parts),
            "lifecycle_ms": {
                "p50": _ms(percentile(durations, 50)),
                "p99": _ms(percentile(durations, 99)),
            },
            "server": {
                "handoff_queued": events["handoff_queued"],
                "interaction_completed": events["interaction_completed"],
            },
            "errors": _merge(parts, "errors"),
        }
        per = r.round_trips_per_lifecycle[backend]
        each = "" if per is None else f", {per:g} round trips to the store each"
        self.say(f"  {rate:,.1f} lifecycles/s ({counted} in {o.duration:g} s{each})")

    def _bare(self) -> None:
        o, r = self.options, self.results
        with self._bare_server() as server:
            parts, _ = self._run_lifecycles(self._lifecycle_jobs(server.target))
        counted = sum(p["counted"] for p in parts)
        r.bare_lifecycles_per_s = round(counted / o.duration, 2)
        r.runs["lifecycles bare"] = {
            "window_s": o.duration,
            "counted": counted,
            "lifecycles": sum(p["lifecycles"] for p in parts),
            "completed": sum(p["completed"] for p in parts),
            "errors": _merge(parts, "errors"),
        }
        self.say(f"  {r.bare_lifecycles_per_s:,.1f} lifecycles/s with nothing behind the RPCs")

    def _echo(self) -> None:
        o, r = self.options, self.results
        assert r.message_bytes is not None
        settings = {echo.RESPONSE_BYTES: str(r.message_bytes["response"])}
        command = (sys.executable, "-m", "humanline.bench.echo")
        self.servers += 1
        log = self.workdir / f"server-{self.servers}-echo.log"
        with local_server(log, settings, command=command, cwd=self.workdir) as server:
            jobs = [
                Job(
                    "echo",
                    server.target,
                    i,
                    "echo",
                    concurrency=o.concurrency,
                    warmup=o.warmup,
                    duration=o.duration,
                    request_bytes=r.message_bytes["request"],
                )
                for i in range(o.processes)
            ]
            fleet, _ = self._fleet(jobs, 0)
            with fleet:
                parts = self._go(fleet, o.warmup + o.duration, "running echo calls")
        counted = sum(p["counted"] for p in parts)
        r.echo_unary_rps = round(counted / o.duration, 1)
        r.runs["echo"] = {
            "calls_in_flight": o.processes * o.concurrency,
            "window_s": o.duration,
            "counted": counted,
            "calls": sum(p["total"] for p in parts),
            "errors": _merge(parts, "errors"),
        }
        self.say(f"  {r.echo_unary_rps:,.0f} echo calls/s")

    def _offer_jobs(self, target: str, agents: list[int], rate: float) -> list[Job]:
        o = self.options
        tag = uuid.uuid4().hex[:6]
        return [
            Job(
                "offers",
                target,
                i,
                tag,
                agents=agents[i],
                rate=rate / o.processes,
                offset=i / rate,
                duration=o.duration,
                drain=o.drain,
                keys=str(self.keys),
            )
            for i in range(o.processes)
        ]

    def _offer_summary(self, parts: list[dict[str, Any]], rate: float) -> dict[str, Any]:
        latencies = [x for p in parts for x in p["latencies"]]
        sent = sum(p["sent"] for p in parts)
        achieved = sum((p["sent"] - 1) / p["send_span"] for p in parts if p["send_span"] > 0)
        missing = sent - len(latencies)
        return {
            "p50": _ms(percentile_with_missing(latencies, missing, 50)),
            "p99": _ms(percentile_with_missing(latencies, missing, 99)),
            "rate": rate,
            "achieved_rate": round(achieved, 1),
            "sent": sent,
            "queued": sum(p["queued"] for p in parts),
            "offered": len(latencies),
        }

    def _offers_at_rate(self, server: LocalServer) -> tuple[list[Job], list[dict[str, Any]]]:
        """Handoffs sent to `server` at the time-to-offer rate, idle agents taking them."""
        o = self.options
        jobs = self._offer_jobs(server.target, [o.offer_agents] * o.processes, o.rate)
        fleet, _ = self._fleet(jobs, sum(j.agents for j in jobs))
        with fleet:
            return jobs, self._go(fleet, o.duration, "sending handoffs")

    def _time_to_offer(self, backend: str) -> None:
        o, r = self.options, self.results
        with self._humanline(backend) as server:
            jobs, parts = self._offers_at_rate(server)
        events = server_events(server.log)
        summary = self._offer_summary(parts, o.rate)
        r.time_to_offer_ms[backend] = summary
        r.runs[f"time to offer {backend}"] = {
            "agents": sum(j.agents for j in jobs),
            "queued": summary["queued"],
            "completed": sum(p["completed"] for p in parts),
            "server": {
                "handoff_queued": events["handoff_queued"],
                "offer_sent": events["offer_sent"],
                "interaction_completed": events["interaction_completed"],
            },
            "errors": _merge(parts, "errors"),
        }
        self.say(
            f"  p50 {_said(summary['p50'])}, p99 {_said(summary['p99'])} at"
            f" {summary['achieved_rate']:g}/s ({summary['offered']} of {summary['sent']} offered)"
        )

    def _time_to_offer_bare(self) -> None:
        """The same load on the bare RPCs: the time to offer no store can beat."""
        o, r = self.options, self.results
        with self._bare_server() as server:
            jobs, parts = self._offers_at_rate(server)
        summary = self._offer_summary(parts, o.rate)
        r.bare_time_to_offer_ms = summary
        r.runs["time to offer bare"] = {
            "agents": sum(j.agents for j in jobs),
            "queued": summary["queued"],
            "completed": sum(p["completed"] for p in parts),
            "errors": _merge(parts, "errors"),
        }
        self.say(
            f"  p50 {_said(summary['p50'])}, p99 {_said(summary['p99'])} at"
            f" {summary['achieved_rate']:g}/s with nothing behind the RPCs"
            f" ({summary['offered']} of {summary['sent']} offered)"
        )

    def _streams(self, n: int) -> None:
        o, r = self.options, self.results
        with self._humanline("sqlite", STREAMS_STOP_TIMEOUT) as server:
            base, idle, after, ready, parts = self._many_agents(server, n)
        summary = self._offer_summary(parts, o.streams_rate)
        entry: dict[str, Any] = {
            "agents": n,
            "connected": sum(p["connected"] for p in ready),
            "create_s": round(max(p["create_s"] for p in ready), 1),
            "connect_s": round(max(p["connect_s"] for p in ready), 1),
            "base_rss_mib": None if base is None else round(base[0], 1),
            "rss_mib": None if idle is None else round(idle[0], 1),
            "peak_rss_mib": None if after is None else round(after[1], 1),
            "time_to_offer_p50_ms": summary["p50"],
            "time_to_offer_p99_ms": summary["p99"],
            "rate": summary["rate"],
            "achieved_rate": summary["achieved_rate"],
            "sent": summary["sent"],
            "offered": summary["offered"],
        }
        r.streams[str(n)] = entry
        r.runs[f"streams {n}"] = {"errors": _merge(parts, "errors")}
        self.say(
            f"  RSS {report.number(entry['rss_mib'])} MiB, time to offer p99 "
            f"{_said(entry['time_to_offer_p99_ms'])} ({entry['offered']} of {entry['sent']}"
            " offered)"
        )
        # The same against the bare RPCs (`bare`): what many streams cost grpc.aio itself.
        with self._bare_server(STREAMS_STOP_TIMEOUT) as bare:
            _, idle, _, _, parts = self._many_agents(bare, n)
        summary = self._offer_summary(parts, o.streams_rate)
        entry["bare"] = {
            "rss_mib": None if idle is None else round(idle[0], 1),
            "time_to_offer_p50_ms": summary["p50"],
            "time_to_offer_p99_ms": summary["p99"],
            "sent": summary["sent"],
            "offered": summary["offered"],
        }
        r.runs[f"streams {n} bare"] = {"errors": _merge(parts, "errors")}
        self.say(
            f"  bare RPCs: RSS {report.number(entry['bare']['rss_mib'])} MiB, time to offer p99"
            f" {_said(summary['p99'])}"
        )

    def _many_agents(self, server: LocalServer, n: int) -> tuple[Any, ...]:
        """`n` idle agents connected to `server`, then handoffs at the streams rate: the
        server's memory empty, idle and at its peak, the clients' ready and result parts."""
        o = self.options
        shares = [n // o.processes + (i < n % o.processes) for i in range(o.processes)]
        pid = server.process.pid
        base = system.memory_mib(pid)
        jobs = self._offer_jobs(server.target, shares, o.streams_rate)
        fleet, ready = self._fleet(jobs, n)
        with fleet:
            time.sleep(SETTLE_SECONDS)
            idle = system.memory_mib(pid)
            parts = self._go(fleet, o.duration, "sending handoffs to many agents")
            after = system.memory_mib(pid)
        return base, idle, after, ready, parts
