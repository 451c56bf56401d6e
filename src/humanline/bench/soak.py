"""`humanline bench --soak` (and `make soak`): whether a handoff costs the same after a month of
history as on the first day, and minute after minute.

For each store, two runs of `humanline serve` on a fresh database, each driven by the same
steady open loop of whole lifecycles (bots request handoffs at evenly spaced moments; agents
accept at once, work a random time of `work` seconds on average, complete):

1. empty: nothing stored before; `empty_minutes` minutes counted.
2. history: `bench.history` preloaded first (2,000,000 finished handoffs over 30 days, with
   their offers, sessions and quality numbers); `minutes` minutes counted.

After a warm-up, every minute gives a row: the server's CPU time per handoff (from
/proc/<pid>/stat), time to offer p50 and p99 of the handoffs sent that minute (a handoff
never offered counts as slower than any), the server's resident memory at the minute's
end, the latency of GetQualityReport by interaction type over the last day and the last 30
days (the median of a few calls in the middle of the minute), and the mean time of the
quality monitor's early-warning checks that minute (from its histogram on /metrics). The
goals are ratios within the same run (`SOAK_GOALS`), and two bounds on the quality reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from humanline.bench import history, postgres, system
from humanline.bench.clients import FINISH_TIMEOUT, BenchError, Fleet, Job
from humanline.bench.load import percentile_with_missing
from humanline.client import credentials
from humanline.client.credentials import Minter
from humanline.sim.demo import LocalServer, ServerError, free_port, local_server
from humanline.tokens import KeyRing
from humanline.v1 import pool_service_pb2, pool_service_pb2_grpc, quality_pb2

BACKENDS = ("sqlite", "postgres")
CHECK_METRIC = "humanline_quality_check_seconds"
START_SECONDS = 2.0  # between telling the clients to run and their first request
READY_TIMEOUT = 180.0  # for creating and connecting the agents
STOP_TIMEOUT = 60.0
REPORT_TIMEOUT = 30.0
REPORT_WINDOWS = {"1d": timedelta(days=1), "30d": timedelta(days=30)}

SOAK_GOALS: dict[str, float] = {
    # Within each history run: the last minute against the first.
    "last_vs_first_cpu_per_handoff_max": 1.25,
    "last_vs_first_time_to_offer_p99_max": 1.25,
    # The history run against the empty store's (medians of their minutes).
    "history_vs_empty_cpu_per_handoff_max": 1.25,
    "history_vs_empty_time_to_offer_p99_max": 1.25,
    # The quality reads, every minute of the history run (the worst minute).
    "report_30d_ms_max": 50,
    "check_ms_max": 5,
    # Resident memory after the first minute: the largest reading over the smallest.
    "rss_growth_max": 1.10,
}


@dataclass(frozen=True)
class SoakOptions:
    """What to run, and how long."""

    backends: tuple[str, ...] = BACKENDS
    postgres_url: str = postgres.DEFAULT_SERVER
    history: int = 2_000_000  # finished handoffs preloaded
    days: float = 30.0  # over this many days
    minutes: int = 10  # counted, on the loaded store
    empty_minutes: int = 3  # counted, on an empty store
    minute: float = 60.0  # seconds per row
    warmup: float = 30.0  # seconds before the first row
    rate: float = 40.0  # handoffs per second, all client processes together
    processes: int = 2
    agents: int = 30  # per client process
    work: float = 0.5  # agents' mean seconds on an interaction
    reports: int = 3  # GetQualityReport calls per window per minute

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("backends", "postgres_url")}


QUICK = SoakOptions(
    history=20_000, days=2.0, minutes=2, empty_minutes=1, minute=10.0, warmup=3.0, rate=20.0
)
"""A short look (and the soak's own test)."""


@dataclass
class Results:
    options: SoakOptions
    machine: dict[str, object] = field(default_factory=system.machine)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> run -> ...
    notes: dict[str, str] = field(default_factory=dict)
    failed: bool = False

    def verdicts(self) -> dict[str, dict[str, Any]]:
        return {backend: verdicts(runs) for backend, runs in self.runs.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.options.settings(),
            "goals": SOAK_GOALS,
            "verdicts": self.verdicts(),
            "runs": self.runs,
            "notes": self.notes,
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _worst(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def verdicts(runs: dict[str, Any]) -> dict[str, Any]:
    """Each goal's measured value and whether it was met (None: not measured)."""
    loaded = runs.get("history", {}).get("minutes") or []
    empty = runs.get("empty", {}).get("minutes") or []
    measured: dict[str, float | None] = {}
    if loaded:
        first, last = loaded[0], loaded[-1]
        measured["last_vs_first_cpu_per_handoff_max"] = _ratio(
            last["cpu_ms_per_handoff"], first["cpu_ms_per_handoff"]
        )
        measured["last_vs_first_time_to_offer_p99_max"] = _ratio(
            last["time_to_offer_p99_ms"], first["time_to_offer_p99_ms"]
        )
        measured["report_30d_ms_max"] = _worst([m["report_ms"].get("30d") for m in loaded])
        measured["check_ms_max"] = _worst([m["check_ms"] for m in loaded])
        rss = [m["rss_mib"] for m in loaded[1:] if m["rss_mib"] is not None]
        measured["rss_growth_max"] = _ratio(max(rss), min(rss)) if rss else None
    if loaded and empty:
        for key, name in (
            ("cpu_ms_per_handoff", "history_vs_empty_cpu_per_handoff_max"),
            ("time_to_offer_p99_ms", "history_vs_empty_time_to_offer_p99_max"),
        ):
            measured[name] = _ratio(
                _median([m[key] for m in loaded]), _median([m[key] for m in empty])
            )
    return {
        name: {
            "measured": measured.get(name),
            "goal": bound,
            "met": None if measured.get(name) is None else measured[name] <= bound,  # type: ignore[operator]
        }
        for name, bound in SOAK_GOALS.items()
    }


def run(options: SoakOptions, say: Callable[[str], None]) -> Results:
    """Both runs on every store; a run that fails leaves its rows out, says why in `notes`
    and sets `failed`. An unreachable PostgreSQL is a note, not a failure."""
    with tempfile.TemporaryDirectory(prefix="humanline-soak-") as workdir:
        return _Soak(options, Path(workdir), say).run()


# --- the parent's side ---------------------------------------------------------------------------


@dataclass
class _Reading:
    """What the sampler read at a minute's boundary."""

    at: float  # wall-clock
    cpu: float | None
    rss: float | None
    checks: tuple[float, float] | None  # the check histogram's (sum, count)


@dataclass
class _Sampler:
    """Reads the server at each minute's boundary and calls GetQualityReport in the middle
    of each minute, in a thread of its own (the parent waits on the clients meanwhile)."""

    server: LocalServer
    metrics_port: int
    keys: KeyRing
    begin: float  # wall-clock of the first boundary
    minutes: int
    minute: float
    reports: int
    readings: list[_Reading] = field(default_factory=list)
    report_ms: list[dict[str, float | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._main, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=REPORT_TIMEOUT * 2)

    def _main(self) -> None:
        try:
            asyncio.run(self._sample())
        except Exception as exc:
            self.errors.append(f"sampler: {exc!r}")

    async def _sleep_until(self, at: float) -> bool:
        while (left := at - time.time()) > 0:
            if self._stop.is_set():
                return False
            await asyncio.sleep(min(left, 0.5))
        return not self._stop.is_set()

    async def _sample(self) -> None:
        minter = Minter(self.keys)
        async with credentials.channel(self.server.target, minter) as channel:
            pool = pool_service_pb2_grpc.PoolServiceStub(channel)
            for k in range(self.minutes + 1):
                boundary = self.begin + k * self.minute
                if not await self._sleep_until(boundary):
                    return
                self.readings.append(self._read(boundary))
                if k == self.minutes:
                    return
                if not await self._sleep_until(boundary + self.minute / 2):
                    return
                self.report_ms.append(await self._reports(pool))

    def _read(self, at: float) -> _Reading:
        pid = self.server.process.pid
        memory = system.memory_mib(pid)
        return _Reading(
            at=at,
            cpu=system.cpu_seconds(pid),
            rss=None if memory is None else memory[0],
            checks=self._checks(),
        )

    def _checks(self) -> tuple[float, float] | None:
        try:
            found = system.metrics(self.metrics_port)
        except OSError as exc:
            self.errors.append(f"metrics: {exc}")
            return None
        total, count = found.get(f"{CHECK_METRIC}_sum"), found.get(f"{CHECK_METRIC}_count")
        return None if total is None or count is None else (total, count)

    async def _reports(self, pool: pool_service_pb2_grpc.PoolServiceStub) -> dict[str, Any]:
        found: dict[str, float | None] = {}
        for name, length in REPORT_WINDOWS.items():
            times = []
            for _ in range(self.reports):
                since = timestamp_pb2.Timestamp()
                since.FromDatetime(datetime.now(UTC) - length)
                request = pool_service_pb2.GetQualityReportRequest(
                    group_by=quality_pb2.QUALITY_DIMENSION_INTERACTION_TYPE, start_time=since
                )
                started = time.perf_counter()
                await pool.GetQualityReport(request, timeout=REPORT_TIMEOUT)
                times.append((time.perf_counter() - started) * 1000)
            found[name] = round(statistics.median(times), 2)
        return found


def _minutes(
    readings: list[_Reading],
    report_ms: list[dict[str, float | None]],
    samples: list[list[Any]],
) -> list[dict[str, Any]]:
    """The rows of the minutes between consecutive readings."""
    rows = []
    for k, (start, end) in enumerate(itertools.pairwise(readings)):
        within = [latency for at, latency in samples if start.at <= at < end.at]
        offered = [latency for latency in within if latency is not None]
        cpu = None if start.cpu is None or end.cpu is None else end.cpu - start.cpu
        checks = None
        if start.checks and end.checks and end.checks[1] > start.checks[1]:
            checks = (end.checks[0] - start.checks[0]) / (end.checks[1] - start.checks[1])
        missing = len(within) - len(offered)
        rows.append(
            {
                "minute": k + 1,
                "handoffs": len(within),
                "offered": len(offered),
                "cpu_ms_per_handoff": (
                    round(cpu * 1000 / len(within), 3) if cpu is not None and within else None
                ),
                "time_to_offer_p50_ms": _ms(percentile_with_missing(offered, missing, 50)),
                "time_to_offer_p99_ms": _ms(percentile_with_missing(offered, missing, 99)),
                "rss_mib": None if end.rss is None else round(end.rss, 1),
                "report_ms": report_ms[k] if k < len(report_ms) else {},
                "check_ms": None if checks is None else round(checks * 1000, 3),
                "checks": (
                    None
                    if not (start.checks and end.checks)
                    else int(end.checks[1] - start.checks[1])
                ),
            }
        )
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class _Soak:
    def __init__(self, options: SoakOptions, workdir: Path, say: Callable[[str], None]) -> None:
        self.options = options
        self.workdir = workdir
        self.say = say
        self.results = Results(options)
        self.servers = 0
        self.keyring = KeyRing.generate()
        self.keys = workdir / "keys.json"
        self.keyring.save(self.keys)

    def run(self) -> Results:
        for backend in self.options.backends:
            self.results.runs[backend] = {}
            try:
                for name in ("empty", "history"):
                    self.say(f"soak {backend}, {name} store ...")
                    self.results.runs[backend][name] = self._run(backend, name == "history")
                    self._say_minutes(self.results.runs[backend][name]["minutes"])
            except postgres.Unreachable as exc:
                self.results.notes[backend] = f"not measured: PostgreSQL at {exc}"
                self.say(f"  PostgreSQL at {exc}: not measured")
            except (BenchError, ServerError, OSError) as exc:
                self.results.failed = True
                self.results.notes[backend] = f"failed: {exc}"
                self.say(f"  failed: {exc}")
        return self.results

    def _say_minutes(self, rows: list[dict[str, Any]]) -> None:
        for m in rows:
            self.say(
                f"  minute {m['minute']}: {m['handoffs']} handoffs, "
                f"{m['cpu_ms_per_handoff']} ms CPU each, time to offer p99 "
                f"{m['time_to_offer_p99_ms']} ms, RSS {m['rss_mib']} MiB, reports "
                f"{m['report_ms']}, check {m['check_ms']} ms"
            )

    @contextlib.contextmanager
    def _database(self, backend: str) -> Iterator[str]:
        self.servers += 1
        if backend == "sqlite":
            yield f"sqlite+aiosqlite:///{self.workdir / f'soak-{self.servers}'}.db"
            return
        pg = self.options.postgres_url
        url = asyncio.run(postgres.create_database(pg, "humanline_soak"))
        try:
            yield url
        finally:
            with contextlib.suppress(postgres.Unreachable):
                asyncio.run(postgres.drop_database(pg, url))

    def _run(self, backend: str, loaded: bool) -> dict[str, Any]:
        o = self.options
        entry: dict[str, Any] = {}
        minutes = o.minutes if loaded else o.empty_minutes
        with self._database(backend) as url:
            if loaded:
                shape = history.History(handoffs=o.history, days=o.days)
                done = asyncio.run(history.load(url, shape, datetime.now(UTC), self.say))
                entry["preload"] = {"rows": done.rows, "seconds": done.seconds}
                self.say(f"  preloaded {done.rows} in {done.seconds:,.0f} s")
            metrics_port = free_port()
            settings = {
                "HUMANLINE_DATABASE_URL": url,
                "HUMANLINE_AUTH_KEYS": str(self.keys),
                "HUMANLINE_LOG_FORMAT": "json",
                "HUMANLINE_LOG_LEVEL": "warning",
                "HUMANLINE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                # The few client processes play every bot and agent from one address.
                "HUMANLINE_RATE_LIMIT_PER_SECOND": "1000000",
                "HUMANLINE_RATE_LIMIT_BURST": "1000000",
                "HUMANLINE_MAX_STREAMS_PER_PEER": "1000000",
            }
            log = self.workdir / f"soak-{self.servers}.log"
            with local_server(log, settings, cwd=self.workdir, stop_timeout=STOP_TIMEOUT) as server:
                entry |= self._drive(server, metrics_port, minutes)
        return entry

    def _drive(self, server: LocalServer, metrics_port: int, minutes: int) -> dict[str, Any]:
        o = self.options
        tag = uuid.uuid4().hex[:6]
        seconds = o.warmup + minutes * o.minute
        jobs = [
            Job(
                "offers",
                server.target,
                i,
                tag,
                agents=o.agents,
                rate=o.rate / o.processes,
                offset=i / o.rate,
                duration=seconds,
                drain=30.0,
                keys=str(self.keys),
                work=o.work,
            )
            for i in range(o.processes)
        ]
        fleet = Fleet(jobs)
        with fleet:
            ready = fleet.collect("ready", READY_TIMEOUT, "creating and connecting agents")
            connected = sum(p.get("connected", 0) for p in ready)
            if connected < o.agents * o.processes:
                raise BenchError(f"only {connected} of {o.agents * o.processes} agents connected")
            begin = time.time() + START_SECONDS
            sampler = _Sampler(
                server,
                metrics_port,
                self.keyring,
                begin + o.warmup,
                minutes,
                o.minute,
                o.reports,
            )
            sampler.start()
            fleet.tell("run", begin)
            try:
                parts = fleet.collect(
                    "result", START_SECONDS + seconds + 30 + 2 * FINISH_TIMEOUT + 60, "soaking"
                )
            finally:
                sampler.stop()
        samples = [s for p in parts for s in p["samples"]]
        errors: dict[str, int] = {}
        for p in parts:
            for key, count in p["errors"].items():
                errors[key] = errors.get(key, 0) + count
        return {
            "minutes": _minutes(sampler.readings, sampler.report_ms, samples),
            "sent": len(samples),
            "offered": sum(1 for _, latency in samples if latency is not None),
            "completed": sum(p["completed"] for p in parts),
            "errors": errors,
            "sampler_errors": sampler.errors,
        }
