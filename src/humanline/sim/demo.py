"""`humanline demo` (and `make demo`): a server on a fresh embedded store, the default scenario
against it for about a minute, the summary, and the server stopped again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from humanline.sim import scenario as scenarios
from humanline.sim.console import console as make_console
from humanline.sim.console import progress_bar, tables
from humanline.sim.runner import Options, simulate

START_TIMEOUT = 30.0


class DemoError(Exception):
    """The demo server did not start; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_serving(target: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise DemoError(f"the server exited with {server.returncode}:\n{log.read_text()}")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise DemoError(f"the server did not serve within {START_TIMEOUT:.0f} s:\n{log.read_text()}")


def run(duration: float | None = None) -> int:
    """Runs the demo; returns the exit status."""
    console = make_console()
    scenario = scenarios.with_run(scenarios.load(), duration=duration)
    with tempfile.TemporaryDirectory(prefix="humanline-demo-") as workdir:
        target = f"127.0.0.1:{_free_port()}"
        log = Path(workdir) / "server.log"
        env = {
            **os.environ,
            "HUMANLINE_LISTEN": target,
            "HUMANLINE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/demo.db",
        }
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "humanline", "serve"], env=env, stdout=out, stderr=out
            )
        try:
            _wait_serving(target, server, log)
            console.print(
                f"[bold]humanline demo[/]: a server on {target} (embedded store), the "
                f"{scenario.name!r} scenario for {scenario.run.duration:.0f} s: "
                f"{len(scenario.types)} interaction types, {scenario.agent_count} gig agents, "
                f"an offered load of {scenario.offered_load():.1f} busy agents on average"
            )
            with progress_bar(console, scenario.run.duration) as on_progress:
                summary, _ = simulate(scenario, Options(target=target), on_progress)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        for table in tables(summary):
            console.print(table)
        console.print(
            "Times run 60x faster than in a contact centre (see the scenario file): "
            "1 s here is 1 minute there. Try your own: humanline simulate my-scenario.toml"
        )
    return 0
