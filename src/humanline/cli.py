"""The `humanline` command: `serve` the dispatch service, `migrate` its database, `simulate`
agents and bots against a running server, `demo` both, `bench` its speed, `token` access
tokens and their keys, `health` a server's grpc.health.v1 status; and for ops, the live
`pool`, its `agents`, `quality` reports and `export` of outcomes for retraining."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from humanline import __version__, ops_cli
from humanline.config import Settings

if TYPE_CHECKING:
    from humanline.bench.run import Options
    from humanline.bench.soak import SoakOptions


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
    from dataclasses import asdict

    from humanline.sim import plot
    from humanline.sim import scenario as scenarios
    from humanline.sim.console import console, detection_table, progress_bar, tables
    from humanline.sim.report import detections
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
    keys = args.keys or Settings().auth_keys
    if args.keys is None and not Path(keys).exists():
        keys = None  # no keyring here: the server must be one that lets callers in
    options = Options(target=args.target, processes=args.processes, keys=keys)
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
    found, false = detections(seen, scenario.drops())
    if args.json:
        print(
            json.dumps(
                {
                    **summary.to_json(),
                    "early_warning": {
                        "detections": [asdict(d) for d in found],
                        "false_alarms": len(false),
                        "alerts": [asdict(a) for a in seen.alerts],
                    },
                },
                indent=2,
            )
        )
    else:
        for table in tables(summary):
            out.print(table)
        if scenario.changes or seen.alerts:
            out.print(detection_table(found, None, len(false)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from humanline.sim import demo
    from humanline.sim.scenario import ScenarioError

    try:
        return demo.run(
            args.duration, routing=args.routing, compare=args.compare, quality=args.quality_drop
        )
    except (demo.ServerError, ScenarioError) as exc:
        raise UsageError(str(exc)) from None


def _agent_counts(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        counts = tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise UsageError(f"--streams: numbers of agents like 1000,5000 (or none), not {text!r}")
    return counts


def _common_bench_changes(args: argparse.Namespace, backends: Sequence[str]) -> dict[str, Any]:
    """What `--backends` and `--postgres-url` change, for the bench and the soak alike."""
    chosen = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not chosen or set(chosen) - set(backends):
        raise UsageError(f"--backends: one or more of {','.join(backends)}, not {args.backends!r}")
    changes: dict[str, Any] = {"backends": chosen}
    if args.postgres_url:
        changes["postgres_url"] = args.postgres_url
    return changes


def _positive(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options of `names` given, each of which must be positive."""
    given: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
        if value is not None:
            given[name] = value
    return given


def _bench_options(args: argparse.Namespace) -> Options:
    from dataclasses import replace

    from humanline.bench.run import BACKENDS, QUICK, Options

    changes = _common_bench_changes(args, BACKENDS)
    if args.streams is not None:
        changes["streams"] = _agent_counts(args.streams)
    changes |= _positive(
        args, ("duration", "warmup", "drain", "rate", "streams_rate", "processes", "concurrency")
    )
    return replace(QUICK if args.quick else Options(), **changes)


def _soak_options(args: argparse.Namespace) -> SoakOptions:
    from dataclasses import replace

    from humanline.bench.soak import BACKENDS, QUICK, SoakOptions

    changes = _common_bench_changes(args, BACKENDS)
    changes |= _positive(args, ("minutes", "empty_minutes", "history", "rate", "processes"))
    return replace(QUICK if args.quick else SoakOptions(), **changes)


def _soak(args: argparse.Namespace, path: Path) -> int:
    import json

    from humanline.bench import report
    from humanline.bench.soak import run
    from humanline.sim.console import console

    options = _soak_options(args)
    out = console()
    results = run(options, lambda line: out.print(line, highlight=False))
    document = results.to_json()
    path.write_text(json.dumps(document, indent=2) + "\n")
    for table in report.soak_tables(document):
        out.print(table)
    for what, note in document["notes"].items():
        out.print(f"{what}: {note}", highlight=False)
    out.print(f"results written to {path}", highlight=False)
    return 1 if results.failed else 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from humanline.bench import report
    from humanline.bench.run import run
    from humanline.sim.console import console

    path = Path(args.out or ("bench/soak.json" if args.soak else "bench/results.json"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
    if args.soak:
        return _soak(args, path)
    options = _bench_options(args)
    out = console()
    results = run(options, lambda line: out.print(line, highlight=False))
    document = results.to_json()
    path.write_text(json.dumps(document, indent=2) + "\n")
    out.print(report.table(document))
    for what, note in document["notes"].items():
        out.print(f"{what}: {note}", highlight=False)
    for mismatch in report.count_mismatches(document):
        out.print(f"[red]count mismatch:[/] {mismatch}", highlight=False)
    out.print(f"results written to {path}", highlight=False)
    return 1 if results.failed else 0


def _duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h` or `30d`."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    try:
        amount = float(text[:-1])
        unit = units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise UsageError(f"--ttl: a duration like 90s, 15m, 12h or 30d, not {text!r}") from None
    if amount <= 0:
        raise UsageError("--ttl must be positive")
    return timedelta(**{unit: amount})


def _token(args: argparse.Namespace) -> int:
    from humanline.domain.access import Principal, Role
    from humanline.tokens import KeyRing, KeyRingError

    path = Path(args.keys or _settings(args).auth_keys)
    try:
        if args.action == "keygen":
            ring = KeyRing.load(path).with_new_key() if path.exists() else KeyRing.generate()
            ring.save(path)
            print(f"{path}: signing with key {ring.signing_key.kid} ({len(ring.keys)} in all)")
        elif args.action == "retire":
            ring = KeyRing.load(path).without(args.kid)
            ring.save(path)
            print(f"{path}: key {args.kid} retired; its tokens no longer verify")
        else:
            role = Role(args.role)
            subject = {Role.AGENT: args.agent_id, Role.BOT: args.bot_id, Role.OPS: args.name}[role]
            if not subject:
                flag = {Role.AGENT: "--agent-id", Role.BOT: "--bot-id"}[role]
                raise UsageError(f"a {role.value} token needs {flag}")
            ttl = _duration(args.ttl) if args.ttl else None
            try:
                print(KeyRing.load(path).issue(Principal(role, subject), ttl))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    except KeyRingError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _health(args: argparse.Namespace) -> int:
    """Asks a server's grpc.health.v1 Check; exit 0 when SERVING, 1 otherwise (and when it
    cannot be reached): for container health checks, where no grpc_health_probe exists."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.tls_ca is None:
        if args.tls_server_name is not None:
            raise UsageError("--tls-server-name goes with --tls-ca")
        channel = grpc.insecure_channel(args.target)
    else:
        try:
            ca = Path(args.tls_ca).read_bytes()
        except OSError as exc:
            raise UsageError(f"--tls-ca: cannot read {args.tls_ca}: {exc.strerror}") from None
        options = []
        if args.tls_server_name is not None:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        channel = grpc.secure_channel(args.target, credentials, options=options)
    name = args.service or "(server)"
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call):
                print(f"{args.target} {name}: {exc.code().name} ({exc.details()})")
            else:
                print(f"{args.target} {name}: {exc}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{args.target} {name}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


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
    sim.add_argument(
        "--keys",
        help="the server's keyring, to sign the simulated callers' tokens with "
        "(default HUMANLINE_AUTH_KEYS, when that file exists)",
    )
    sim.set_defaults(func=_simulate)
    ops_cli.add_commands(sub)
    demo = sub.add_parser(
        "demo", help="serve on a fresh embedded store and play the default scenario against it"
    )
    demo.add_argument("--duration", type=float, help="seconds of arrivals (default 60)")
    demo.add_argument(
        "--routing",
        choices=("risk", "topic"),
        default="risk",
        help="route by the risk policies (default) or by topic and urgency alone",
    )
    demo.add_argument(
        "--compare",
        action="store_true",
        help="play the scenario routed by topic, then by risk, and compare the two",
    )
    demo.add_argument(
        "--quality-drop",
        action="store_true",
        help="play the scenario without and with billing disputes failing from a quarter in, "
        "and say how soon the server's early warning caught it",
    )
    demo.set_defaults(func=_demo)
    bench = sub.add_parser(
        "bench",
        help="measure lifecycles/s, time to offer and memory per stream beside a grpc echo ceiling",
    )
    bench.add_argument(
        "--out", help="where to write the JSON (bench/results.json; with --soak, bench/soak.json)"
    )
    bench.add_argument(
        "--soak",
        action="store_true",
        help="preload a month of history, then run steady lifecycles for minutes on each "
        "store: the cost per handoff over time and history",
    )
    bench.add_argument("--minutes", type=int, help="soak: minutes on the loaded store (10)")
    bench.add_argument("--empty-minutes", type=int, help="soak: minutes on an empty store (3)")
    bench.add_argument("--history", type=int, help="soak: finished handoffs preloaded (2000000)")
    bench.add_argument("--quick", action="store_true", help="short runs and small numbers")
    bench.add_argument("--backends", default="sqlite,postgres", help="stores to measure")
    bench.add_argument(
        "--postgres-url", help="a PostgreSQL server to create throw-away databases on"
    )
    bench.add_argument(
        "--streams", help="idle agents to connect, e.g. 1000,5000,10000 (none: skip)"
    )
    bench.add_argument("--duration", type=float, help="seconds measured per phase")
    bench.add_argument("--warmup", type=float, help="seconds before counting lifecycles")
    bench.add_argument("--drain", type=float, help="seconds at most for work left at the end")
    bench.add_argument("--processes", type=int, help="client processes (default 2)")
    bench.add_argument("--concurrency", type=int, help="bots (and echo calls) per process")
    bench.add_argument(
        "--rate", type=float, help="handoffs/s for time to offer (200); soak: steady rate (40)"
    )
    bench.add_argument(
        "--streams-rate", type=float, help="handoffs/s with many agents connected (default 50)"
    )
    bench.set_defaults(func=_bench)
    token = sub.add_parser("token", help="issue access tokens; make and rotate signing keys")
    token.add_argument("--keys", help="the keyring file (HUMANLINE_AUTH_KEYS)")
    token.set_defaults(func=_token, listen=None, database_url=None)
    actions = token.add_subparsers(dest="action", required=True)
    # `--keys` also after the action (`humanline token keygen --keys F`), as people write it.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--keys", default=argparse.SUPPRESS, help="the keyring file")
    issue = actions.add_parser(
        "issue", parents=[after], help="print a token for an agent, a bot or ops"
    )
    issue.add_argument("--role", required=True, choices=["agent", "bot", "ops"])
    issue.add_argument("--agent-id", help="the agent (role agent)")
    issue.add_argument("--bot-id", help="the bot's identity (role bot)")
    issue.add_argument("--name", default="ops", help="who (role ops; default ops)")
    issue.add_argument(
        "--ttl", help="lifetime: 90s, 15m, 12h, 30d (default: agent 12h, bot 30d, ops 8h)"
    )
    actions.add_parser(
        "keygen", parents=[after], help="create the keyring, or add a key that signs from now on"
    )
    retire = actions.add_parser(
        "retire", parents=[after], help="remove a key: tokens it signed stop verifying"
    )
    retire.add_argument("kid", help="the key's id")
    check = sub.add_parser(
        "health", help="ask a server's grpc.health.v1 status: exit 0 when SERVING, 1 otherwise"
    )
    check.add_argument("--target", default="127.0.0.1:50051", help="the server's host:port")
    check.add_argument("--service", default="", help="a service's full name (default: the server)")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    check.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM CA to verify a TLS listener (HUMANLINE_TLS_CERT_FILE) with; default plaintext",
    )
    check.add_argument(
        "--tls-server-name", help="the name to expect in the server's certificate (with --tls-ca)"
    )
    check.set_defaults(func=_health)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `humanline` command."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ops_cli.OpsError) as exc:
        print(f"humanline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
