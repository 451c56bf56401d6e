"""`humanline serve` as a separate OS process, and helpers to talk to it from the test process.

`ServerProcess` starts the real command (`python -m humanline serve`) in a session of its own
with a fresh SQLite file and `HUMANLINE_*` settings, captures its stdout and stderr to files
(one pair per run), waits until grpc.health.v1 says SERVING, and stops it: SIGTERM (graceful),
SIGKILL (a crash, no goodbye) or SIGTERM with a SIGKILL fallback. A stopped server starts
again on the same port and database, as an operator's restart does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from humanline.tokens import KeyRing
from tests.support.client import Stubs

REPO = Path(__file__).resolve().parents[2]

# Generous: a loaded 2-core machine may take several seconds to import and migrate.
START_TIMEOUT = 60.0
# SIGTERM gets this long before SIGKILL; well above HUMANLINE_SHUTDOWN_GRACE_SECONDS below.
STOP_TIMEOUT = 30.0

# Client channels reconnect fast (the default backoff grows to minutes) and never share a
# subchannel, with its backoff state, with another channel to the same address.
# Fast reconnects after a restart (a refused connection is retried within 100-500 ms), but
# `min_reconnect_backoff_ms` is also gRPC core's minimum connect timeout: at 100 ms a handshake
# with a server busy on a loaded machine timed out ("connection attempt timed out before
# receiving SETTINGS frame") and failed the call.
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 5000),
    ("grpc.max_reconnect_backoff_ms", 500),
]

# Short timings, still far above scheduling noise; tests override what they exercise.
DEFAULT_SETTINGS = {
    "HUMANLINE_OFFER_TIMEOUT_SECONDS": "10",
    "HUMANLINE_GRACE_PERIOD_SECONDS": "10",
    # No test here heartbeats: 20 s x 3 misses leaves a silent stream 60 s to live.
    "HUMANLINE_HEARTBEAT_INTERVAL_SECONDS": "20",
    "HUMANLINE_SHUTDOWN_GRACE_SECONDS": "3",
    "HUMANLINE_SWEEP_INTERVAL_SECONDS": "0.25",
    "HUMANLINE_WATCH_INTERVAL_SECONDS": "0.1",
    # One test bot plays every bot of a crowd, faster than any one bot would, and every agent
    # of a crowd (HUMANLINE_E2E_AGENTS scales it) connects from this one address: the limits
    # are raised (they have tests of their own, with the defaults).
    "HUMANLINE_RATE_LIMIT_PER_SECOND": "5000",
    "HUMANLINE_RATE_LIMIT_BURST": "5000",
    "HUMANLINE_MAX_STREAMS_PER_PEER": "100000",
}

# What a healthy server never writes: unhandled exceptions, asyncio's complaints about tasks and
# resources, log lines at error level (JSON and console renderings).
STDERR_TROUBLE = ("Traceback", "Exception ignored", "Task was destroyed", "ResourceWarning")
ERROR_LEVELS = ('"level": "error"', '"level": "critical"', "[error", "[critical")

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")

KEYS = KeyRing.generate()  # every e2e server's keyring; the test process mints tokens with it


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Runs `python -m module ...` or `python path ...` after giving SIGINT back its handler.
_INTERRUPTIBLE = """\
import runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = sys.argv[1:]
if sys.argv[0] == "-m":
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def interruptible(*args: str) -> list[str]:
    """The command line of a Python child (`"-m", "humanline", ...` or a script's path and
    its arguments) that a test interrupts as Ctrl-C does. A shell without job control (CI may
    start the tests so) runs background commands with SIGINT ignored, the children inherit
    that, and Python then never raises KeyboardInterrupt; the child sets it back itself.

    Not with `preexec_fn`: that makes Python fork the test process (which runs gRPC) and run
    code in the child before exec, and gRPC's poller thread, restarted there, once found its
    epoll descriptor closed and aborted the child (SIGABRT, "epoll_wait error: Bad file
    descriptor"). Without it the child is spawned without running anything of the parent."""
    return [sys.executable, "-c", _INTERRUPTIBLE, *args]


def clean_environ() -> dict[str, str]:
    """The test process's environment without settings that would leak into a server:
    the developer's own HUMANLINE_* variables and a parent make's job server."""
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HUMANLINE_") and key not in drop
    }
    env["PYTHONUNBUFFERED"] = "1"  # every log line reaches its file at once, even on SIGKILL
    return env


def channel(target: str) -> grpc.aio.Channel:
    """A client channel to `target` with fast reconnects."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def connect(target: str, keys: KeyRing | None = KEYS) -> Stubs:
    """The shared test stubs (tests/support/client.py), their calls carrying tokens signed
    by `keys` (the servers' keyring), on a channel of our own options."""
    return Stubs.connect(target, keys, options=CHANNEL_OPTIONS)


def write_keys(path: Path) -> Path:
    """The e2e servers' keyring, at `path`."""
    KEYS.save(path)
    return path


async def health_status(target: str, service: str = "", timeout: float = 2.0) -> int | None:
    """What grpc.health.v1 Check says for `service`, or None if the call fails."""
    async with channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return None
        status: int = response.status
        return status


async def wait_serving(
    target: str,
    process: asyncio.subprocess.Process,
    describe: Callable[[], str],
    timeout: float = START_TIMEOUT,
) -> None:
    """Polls grpc.health.v1 Check until SERVING. Fails the test, with `describe()` (the
    captured output), if the process exits first or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            if process.returncode is not None:
                pytest.fail(
                    f"the server exited with {process.returncode} before serving\n{describe()}"
                )
            with contextlib.suppress(grpc.aio.AioRpcError):
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if loop.time() > deadline:
                pytest.fail(f"the server was not SERVING within {timeout:.0f} s\n{describe()}")
            await asyncio.sleep(0.1)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a captured output file."""
    if not path.exists():
        return f"({path.name}: missing)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.parent.name}/{path.name} (last {len(text)} lines) ---\n" + "\n".join(text)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


async def kill_group(process: asyncio.subprocess.Process, sig: int, timeout: float) -> bool:
    """Sends `sig` to the process group led by `process` (started with start_new_session)
    and waits for the leader; SIGKILLs the group after `timeout`. True if `sig` sufficed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        await asyncio.wait_for(process.wait(), timeout)
        return True
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return False


@dataclass
class ServerProcess:
    """One server's configuration, its current process, and the output of every run."""

    workdir: Path
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    runs: int = 0
    exit_codes: list[int] = field(default_factory=list)
    forced_kills: int = 0

    @classmethod
    def create(cls, workdir: Path, **settings: str) -> ServerProcess:
        """A server (not started) on a free port, with a fresh database in `workdir`."""
        workdir.mkdir(parents=True, exist_ok=True)
        env = clean_environ()
        env.update(DEFAULT_SETTINGS)
        env["HUMANLINE_LISTEN"] = f"127.0.0.1:{free_port()}"
        env["HUMANLINE_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir.resolve() / 'humanline.db'}"
        env["HUMANLINE_AUTH_KEYS"] = str(write_keys(workdir.resolve() / "keys.json"))
        env.update(settings)
        return cls(workdir, env)

    @property
    def target(self) -> str:
        """host:port the server listens on (HUMANLINE_LISTEN)."""
        return self.env["HUMANLINE_LISTEN"]

    @property
    def running(self) -> bool:
        return self.process is not None

    def stdout_path(self, run: int) -> Path:
        return self.workdir / f"server-{run}.stdout"

    def stderr_path(self, run: int) -> Path:
        return self.workdir / f"server-{run}.stderr"

    # --- process ----------------------------------------------------------------------------

    async def start(self, **settings: str) -> None:
        """Starts `humanline serve` (again, on the same port and database) and waits until
        it is SERVING. `settings` change HUMANLINE_* variables from this run on."""
        process = await self.spawn(**settings)
        # Its own banner first: the health answer must come from this process, not from
        # another one sharing the port.
        if await self.serves_or_exits() == "exited":
            pytest.fail(f"the server exited with {self.exit_codes[-1]} at start\n{self.describe()}")
        await wait_serving(self.target, process, self.describe)

    async def spawn(self, **settings: str) -> asyncio.subprocess.Process:
        """Starts `humanline serve` without waiting for it to serve."""
        assert self.process is None, "the server is already running"
        self.env.update(settings)
        self.runs += 1
        with (
            self.stdout_path(self.runs).open("wb") as out,
            self.stderr_path(self.runs).open("wb") as err,
        ):
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "humanline",
                "serve",
                cwd=self.workdir,  # no stray .env file is read
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self.process

    async def serves_or_exits(self, timeout: float = START_TIMEOUT) -> str:
        """For a spawned server: "serving" once its banner is out, "exited" if it ends first.
        An exited server is reaped (see `exit_codes`)."""
        process = self._current()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if process.returncode is not None:
                await self._reap()
                return "exited"
            if "is serving on" in self.stderr_path(self.runs).read_text(errors="replace"):
                return "serving"
            await asyncio.sleep(0.1)
        pytest.fail(
            f"the server neither served nor exited within {timeout:.0f} s\n{self.describe()}"
        )

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """Graceful stop: SIGTERM, then SIGKILL (counted in `forced_kills`) if the server
        is still there after `timeout`. Returns the exit code."""
        process = self._current()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            self.forced_kills += 1
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return await self._reap()

    async def kill(self) -> int:
        """A crash: SIGKILL to the server's process group, no goodbye. Returns the exit
        code (-9)."""
        process = self._current()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return await self._reap()

    def _current(self) -> asyncio.subprocess.Process:
        assert self.process is not None, "the server is not running"
        return self.process

    async def _reap(self) -> int:
        process = self._current()
        code = await process.wait()
        self.process = None
        self.exit_codes.append(code)
        return code

    # --- output -----------------------------------------------------------------------------

    def stdout(self) -> str:
        """Everything the server wrote to stdout, over all runs."""
        return "".join(
            self.stdout_path(run).read_text(errors="replace") for run in range(1, self.runs + 1)
        )

    def stderr(self) -> str:
        """Everything the server wrote to stderr, over all runs."""
        return "".join(
            self.stderr_path(run).read_text(errors="replace") for run in range(1, self.runs + 1)
        )

    def log_events(self) -> list[dict[str, Any]]:
        """The structlog JSON objects on stdout, over all runs (every line must be one)."""
        events = []
        for number, line in enumerate(self.stdout().splitlines(), 1):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"stdout line {number} is not JSON: {line!r}")
            assert isinstance(event, dict), line
            events.append(event)
        return events

    def trouble(self) -> list[str]:
        """Signs of a bug in a server that ran and stopped normally: a traceback or an
        asyncio complaint on the latest run's stderr, error-level log lines on any run."""
        stderr = self.stderr_path(self.runs).read_text(errors="replace") if self.runs else ""
        found = [f"stderr has {marker!r}" for marker in STDERR_TROUBLE if marker in stderr]
        found += [
            f"error log line: {line}"
            for line in self.stdout().splitlines()
            if any(level in line for level in ERROR_LEVELS)
        ]
        return found

    def describe(self) -> str:
        """The tail of the latest run's output, for failure messages."""
        if self.runs == 0:
            return "(never started)"
        return "\n".join(
            (
                f"server {self.target}, run {self.runs}, exit codes so far {self.exit_codes}",
                tail(self.stderr_path(self.runs)),
                tail(self.stdout_path(self.runs)),
            )
        )


StartServer = Callable[..., Awaitable[ServerProcess]]
"""The `start_server` fixture: `await start_server(HUMANLINE_X="1")` starts one more server
and waits until it serves; `await start_server(wait=False, ...)` only spawns it."""
