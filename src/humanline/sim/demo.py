"""`humanline demo` (and `make demo`): a server on a fresh embedded store, the default scenario
against it for about a minute, the summary, and the server stopped again.

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
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from humanline.sim import scenario as scenarios
from humanline.sim.console import console as make_console
from humanline.sim.console import progress_bar, tables
from humanline.sim.runner import Options, simulate
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


def run(duration: float | None = None) -> int:
    """Runs the demo; returns the exit status."""
    console = make_console()
    scenario = scenarios.with_run(scenarios.load(), duration=duration)
    with tempfile.TemporaryDirectory(prefix="humanline-demo-") as workdir:
        keys = Path(workdir) / "keys.json"
        KeyRing.generate().save(keys)  # the server's, and the simulated callers sign with it
        settings = {
            "HUMANLINE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/demo.db",
            "HUMANLINE_AUTH_KEYS": str(keys),
        }
        with local_server(Path(workdir) / "server.log", settings) as server:
            console.print(
                f"[bold]humanline demo[/]: a server on {server.target} (embedded store), the "
                f"{scenario.name!r} scenario for {scenario.run.duration:.0f} s: "
                f"{len(scenario.types)} interaction types, {scenario.agent_count} gig agents, "
                f"an offered load of {scenario.offered_load():.1f} busy agents on average"
            )
            with progress_bar(console, scenario.run.duration) as on_progress:
                options = Options(target=server.target, keys=str(keys))
                summary, _ = simulate(scenario, options, on_progress)
        for table in tables(summary):
            console.print(table)
        console.print(
            "Times run 60x faster than in a contact centre (see the scenario file): "
            "1 s here is 1 minute there. Try your own: humanline simulate my-scenario.toml"
        )
    return 0
