"""`humanline demo` (and `make demo`): a server on a fresh embedded store, the default scenario
against it for about a minute, the summary, and the server stopped again. `--compare` plays
the scenario twice, routed by topic and urgency alone and then by the risk policies, and
sets the two side by side.

`local_server` is the demo's way of running a server process on a free port, shared with
`humanline bench`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console

from humanline import policyfile
from humanline.domain.model import Urgency
from humanline.domain.rules import DEFAULT_TARGETS
from humanline.sim import report
from humanline.sim import scenario as scenarios
from humanline.sim.console import comparison_table, detection_table, progress_bar, tables
from humanline.sim.console import console as make_console
from humanline.sim.report import Detection, Observations, Summary, Yardstick
from humanline.sim.runner import Options, simulate
from humanline.sim.scenario import Change, Scenario
from humanline.tokens import KeyRing

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
SERVE = (sys.executable, "-m", "humanline", "serve")


class ServerError(Exception):
    """A local server did not start; the message says why."""


@dataclass(frozen=True)
class LocalServer:
    """A server process on this machine: where it listens, the process, its captured output."""

    target: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_serving(target: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise ServerError(f"the server exited with {server.returncode}:\n{log.read_text()}")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise ServerError(f"the server did not serve within {timeout:.0f} s:\n{log.read_text()}")


@contextmanager
def local_server(
    log: Path,
    settings: Mapping[str, str],
    *,
    command: Sequence[str] = SERVE,
    cwd: Path | None = None,
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[LocalServer]:
    """Runs `command` (`humanline serve` unless told otherwise) on a free port of the loopback
    interface, which it finds in HUMANLINE_LISTEN, with `settings` added to this process's
    environment and its stdout and stderr written to `log`. Yields the server once
    grpc.health.v1 says SERVING; on leaving, SIGTERM, and SIGKILL after `stop_timeout`."""
    target = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **settings, "HUMANLINE_LISTEN": target}
    with log.open("wb") as out:
        server = subprocess.Popen(list(command), env=env, stdout=out, stderr=out, cwd=cwd)
    try:
        _wait_serving(target, server, log, start_timeout)
        yield LocalServer(target, server, log)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


ROUTING = {
    # The built-in routing policies at the default scenario's pace.
    "risk": "default-routing.toml",
    # Topic and urgency alone, as before routing policies: the comparison's "before".
    "topic": "default-routing-topic.toml",
}


@dataclass(frozen=True)
class Played:
    """One play of a scenario: its summary and everything observed."""

    summary: Summary
    seen: Observations


def _play(
    scenario: Scenario,
    routing: str,
    console: Console,
    note: str = "",
    extra: Mapping[str, str] | None = None,
) -> Played:
    """Plays `scenario` against a server of its own on a fresh embedded store, routing with
    the packaged policy file `routing` names (`extra`: more of the server's settings)."""
    policies = resources.files("humanline.sim").joinpath(ROUTING[routing])
    with tempfile.TemporaryDirectory(prefix="humanline-demo-") as workdir:
        keys = Path(workdir) / "keys.json"
        KeyRing.generate().save(keys)  # the server's, and the simulated callers sign with it
        policy_file = Path(workdir) / "routing.toml"
        policy_file.write_text(policies.read_text())
        settings = {
            "HUMANLINE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/demo.db",
            "HUMANLINE_AUTH_KEYS": str(keys),
            "HUMANLINE_ROUTING_POLICIES": str(policy_file),
            **(extra or {}),
        }
        with local_server(Path(workdir) / "server.log", settings) as server:
            console.print(
                f"[bold]humanline demo[/]{note}: a server on {server.target} (embedded store, "
                f"routing {ROUTING[routing]}), the {scenario.name!r} scenario for "
                f"{scenario.run.duration:.0f} s: {len(scenario.types)} interaction types, "
                f"{scenario.agent_count} gig agents, an offered load of "
                f"{scenario.offered_load():.1f} busy agents on average"
            )
            with progress_bar(console, scenario.run.duration) as on_progress:
                options = Options(target=server.target, keys=str(keys))
                summary, seen = simulate(scenario, options, on_progress)
    return Played(summary, seen)


def yardsticks(scenario: Scenario) -> tuple[dict[str, Yardstick], dict[str, float]]:
    """What each interaction type of `scenario` should get (the risk policies at the default
    scenario's pace) and who is proficient enough for it (its skills at the policy's floor),
    and how urgency scales a target (as the server's default targets do)."""
    text = resources.files("humanline.sim").joinpath(ROUTING["risk"]).read_text()
    kinds = {kind.name: kind for kind in scenario.types}
    sticks = {}
    for p in policyfile.parse(text, ROUTING["risk"]):
        kind = kinds.get(p.interaction_type)
        skills = kind.skills if kind is not None else {}
        need = {skill: max(level, p.min_proficiency) for skill, level in skills.items()}
        proficient = frozenset(
            group.name
            for group in scenario.agents
            if all(group.skills.get(skill, 0) >= level for skill, level in need.items())
        )
        sticks[p.interaction_type] = Yardstick(
            p.target.total_seconds(), p.max_wait.total_seconds(), p.risk_class.name, proficient
        )
    normal = DEFAULT_TARGETS[Urgency.NORMAL]
    return sticks, {u.name: DEFAULT_TARGETS[u] / normal for u in Urgency}


# The quality demo: billing disputes start failing a quarter into the run; the server judges a
# sliding four minutes (four hours at the scenario's pace: about 55 billing disputes, as a
# flag needs 30), looking every second at the latest.
DROPPED_TYPE = "billing_dispute"
DROPPED_RESOLVE = 0.4
QUALITY_DURATION = 240.0  # by default: enough billing disputes after the drop to judge
QUALITY_SETTINGS = {
    "HUMANLINE_QUALITY_WINDOW_SECONDS": "240",
    "HUMANLINE_QUALITY_CHECK_SECONDS": "1",
}


def quality_drop(scenario: Scenario, console: Console) -> tuple[list[Detection], int, int]:
    """Plays `scenario` twice: without its changes, and with billing disputes resolved at
    40% from a quarter into the run. Returns how soon the second run's drop was flagged,
    and the flags raised for untouched types in each run (false alarms)."""
    at = scenario.run.duration / 4
    change = Change(at=at, interaction_type=DROPPED_TYPE, resolve=DROPPED_RESOLVE)
    dropped = scenario.model_copy(update={"changes": [change]})
    steady = scenario.model_copy(update={"changes": []})
    control = _play(steady, "risk", console, " (1 of 2, no drop)", QUALITY_SETTINGS)
    failing = _play(
        dropped,
        "risk",
        console,
        f" (2 of 2, {DROPPED_TYPE} failing from {at:.0f} s)",
        QUALITY_SETTINGS,
    )
    _, quiet = report.detections(control.seen, [])
    found, false = report.detections(failing.seen, dropped.drops())
    return found, len(quiet), len(false)


def run(
    duration: float | None = None,
    *,
    routing: str = "risk",
    compare: bool = False,
    quality: bool = False,
) -> int:
    """Runs the demo; returns the exit status. With `compare`, plays the scenario routed by
    topic and urgency alone, then by the risk policies, and sets the two side by side. With
    `quality`, plays it without and with a quality drop and says how soon the server's early
    warning caught the drop."""
    console = make_console()
    if quality and duration is None:
        duration = QUALITY_DURATION
    scenario = scenarios.with_run(scenarios.load(), duration=duration)
    if quality:
        found, quiet, false = quality_drop(scenario, console)
        console.print(detection_table(found, quiet, false))
    elif not compare:
        played = _play(scenario, routing, console)
        for table in tables(played.summary):
            console.print(table)
    else:
        before = _play(scenario, "topic", console, " (1 of 2, by topic and urgency)")
        after = _play(scenario, "risk", console, " (2 of 2, by risk)")
        sticks, scale = yardsticks(scenario)
        rows = report.compare(before.seen, after.seen, sticks, scale)
        console.print(comparison_table(rows))
        for table in tables(after.summary):
            console.print(table)
    console.print(
        "Times run 60x faster than in a contact centre (see the scenario file): "
        "1 s here is 1 minute there. Try your own: humanline simulate my-scenario.toml"
    )
    return 0
