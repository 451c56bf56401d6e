"""The `humanline` command: `serve` the dispatch service, `migrate` its database, `simulate`
agents and bots against a running server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

from humanline import __version__
from humanline.config import Settings


class UsageError(Exception):
    """Bad configuration or a refused start: reported in one line, exit status 2."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in (("listen", args.listen), ("database_url", args.database_url))
        if value is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"HUMANLINE_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in exc.errors()
        )
        raise UsageError(f"invalid settings: {problems}") from None


def _serve(args: argparse.Namespace) -> int:
    from humanline import logs
    from humanline.grpc.server import StartupError, serve

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from humanline.domain.clock import SystemClock
    from humanline.store.port import StoreError
    from humanline.store.sql import migrations
    from humanline.store.sql.store import SqlStore

    settings = _settings(args)

    async def run() -> str | None:
        store = SqlStore(settings.database_url, SystemClock())
        await store.open()  # opening migrates to the newest revision
        try:
            return await store.revision()
        finally:
            await store.close()

    try:
        revision = asyncio.run(run())
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    print(f"database at revision {revision} (newest: {migrations.head()})")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import json

    from humanline.sim import plot
    from humanline.sim import scenario as scenarios
    from humanline.sim.console import console, progress_bar, tables
    from humanline.sim.runner import Options, SimulationError, simulate

    try:
        scenario = scenarios.with_run(
            scenarios.load(args.scenario),
            duration=args.duration,
            drain=args.drain,
            seed=args.seed,
        )
    except scenarios.ScenarioError as exc:
        raise UsageError(str(exc)) from None
    options = Options(target=args.target, processes=args.processes)
    out = console(stderr=args.json)
    try:
        if args.plot:
            plot.check()  # before the run, not after it
        with progress_bar(out, scenario.run.duration, enabled=not args.quiet) as on_progress:
            summary, seen = simulate(scenario, options, on_progress)
        if args.plot:
            plot.draw(seen, Path(args.plot), f"{scenario.name}: {args.target}")
    except (SimulationError, plot.PlotUnavailable, OSError) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        for table in tables(summary):
            out.print(table)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from humanline.sim import demo
    from humanline.sim.scenario import ScenarioError

    try:
        return demo.run(args.duration)
    except (demo.ServerError, ScenarioError) as exc:
        raise UsageError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="humanline", description=__doc__)
    p.add_argument("--version", action="version", version=f"humanline {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("serve", _serve, "serve the gRPC API (HUMANLINE_* variables configure it)"),
        ("migrate", _migrate, "migrate the database schema to the newest revision"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--listen", help="host:port to bind (HUMANLINE_LISTEN)")
        cmd.add_argument("--database-url", help="database URL (HUMANLINE_DATABASE_URL)")
        cmd.set_defaults(func=func)
    sim = sub.add_parser(
        "simulate", help="play gig agents and bots from a scenario against a running server"
    )
    sim.add_argument("scenario", nargs="?", help="scenario file (TOML); default: the built-in one")
    sim.add_argument("--target", default="127.0.0.1:50051", help="the server's host:port")
    sim.add_argument("--duration", type=float, help="seconds of arrivals (overrides the file)")
    sim.add_argument("--drain", type=float, help="seconds at most for the last handoffs")
    sim.add_argument("--seed", type=int, help="random seed (overrides the file)")
    sim.add_argument("--processes", type=int, default=0, help="agent processes (0: automatic)")
    sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    sim.add_argument("--plot", metavar="FILE.png", help="draw queue, agents and waits over time")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_simulate)
    demo = sub.add_parser(
        "demo", help="serve on a fresh embedded store and play the default scenario against it"
    )
    demo.add_argument("--duration", type=float, help="seconds of arrivals (default 60)")
    demo.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `humanline` command."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"humanline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
