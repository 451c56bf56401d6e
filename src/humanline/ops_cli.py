"""The ops commands of `humanline`: `pool`, `agents`, `quality` and `export`.

Each talks to a running server through the SDK's `PoolClient` and prints rich tables for
people or, with `--json`, JSON for scripts: the API's messages as protobuf's JSON mapping with
the proto field names (`agent_id`, `AGENT_STATE_AVAILABLE`) and zeros spelled out, one object
per line. `pool` stays on and redraws its tables at each change the server streams (`--once`
prints one snapshot and exits). The tables are in ops_tables.py.

The caller is ops: a token from `--token` or `HUMANLINE_TOKEN` (from `humanline token issue
--role ops`), or, beside the server, one minted from its keyring (`--keys`, by default
HUMANLINE_AUTH_KEYS when that file exists); without either, none (a server started with
HUMANLINE_INSECURE_NO_AUTH).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The commands import grpc, rich and the SDK when they run, not when `humanline` builds its
# parser: `humanline health`, a container's health check, starts in half the time.
if TYPE_CHECKING:
    from rich.console import Console

    from humanline.client import PoolClient
    from humanline.v1 import pool_service_pb2


class OpsError(Exception):
    """A bad option or a refused call: one line on stderr, exit status 2."""


# Arguments shared by the ops commands


def add_connection(cmd: argparse.ArgumentParser) -> None:
    """--target, the token and TLS, as every ops command takes them."""
    cmd.add_argument(
        "--target",
        help="the server: host:port or a gRPC target (HUMANLINE_TARGET; 127.0.0.1:50051)",
    )
    cmd.add_argument("--token", help="an ops token (HUMANLINE_TOKEN; `humanline token issue`)")
    cmd.add_argument(
        "--keys",
        help="the server's keyring, to sign an ops token with when no token is given "
        "(default HUMANLINE_AUTH_KEYS, when that file exists)",
    )
    cmd.add_argument("--tls-ca", metavar="FILE", help="PEM CA to verify a TLS server with")
    cmd.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    cmd.add_argument("--tls-key", metavar="FILE", help="the client certificate's key")
    cmd.add_argument("--tls-server-name", help="the name to expect in the server's certificate")
    cmd.add_argument("--json", action="store_true", help="JSON for scripts instead of tables")


def _token(args: argparse.Namespace) -> str | None:
    token = args.token or os.environ.get("HUMANLINE_TOKEN")
    if token:
        return str(token)
    from humanline.config import Settings
    from humanline.domain.access import Principal, Role
    from humanline.tokens import KeyRing, KeyRingError

    keys = args.keys or Settings().auth_keys
    if args.keys is None and not Path(keys).exists():
        return None  # no keyring here: the server must be one that lets callers in
    try:
        return KeyRing.load(Path(keys)).issue(Principal(Role.OPS, "ops-cli"))
    except (KeyRingError, ValueError) as exc:
        raise OpsError(f"--keys: {exc}") from None


def client(args: argparse.Namespace) -> PoolClient:
    """A PoolClient as the options say."""
    from humanline.client import PoolClient, tls

    options: list[tuple[str, Any]] = []
    credentials = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        try:
            credentials = tls(args.tls_ca, args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:
            raise OpsError(f"TLS: {exc}") from None
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
    elif args.tls_server_name:
        raise OpsError("--tls-server-name goes with TLS: --tls-ca, or --tls-cert and --tls-key")
    return PoolClient(args.target, token=_token(args), credentials=credentials, options=options)


def run(
    args: argparse.Namespace,
    command: Callable[[PoolClient], Awaitable[int]],
    *,
    interrupted: int = 130,
) -> int:
    """Runs `command` with a client; a refused call or a lost server is an OpsError. Ctrl-C
    ends it with status `interrupted` (130, as a shell reports SIGINT, unless told)."""
    from humanline.client import ApiError

    async def main() -> int:
        async with client(args) as pool:
            return await command(pool)

    try:
        return asyncio.run(main())
    except ApiError as error:
        hint = ""
        if error.reason == "TOKEN_MISSING":
            hint = "; give an ops token with --token or HUMANLINE_TOKEN"
        raise OpsError(f"{error}{hint}") from None
    except KeyboardInterrupt:
        return interrupted
    except BrokenPipeError:  # `humanline agents --json | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


def _line(document: dict[str, Any]) -> None:
    print(json.dumps(document, sort_keys=True), flush=True)


def _moment(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it says), or a span back from now: `30m`, `24h`, `7d`."""
    spans = {"m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in spans and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(text[:-1]) * spans[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise OpsError(f"{text!r}: give an ISO 8601 time or a span such as 24h or 7d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    now = datetime.now(UTC)
    since = _moment(args.since, now) if args.since else None
    until = _moment(args.until, now) if args.until else None
    return since, until


def _out() -> Console:
    from rich.console import Console

    plain = Console()
    return plain if plain.is_terminal else Console(width=160)


# The commands


def pool(args: argparse.Namespace) -> int:
    from humanline import ops_tables

    if args.interval is not None and args.interval <= 0:
        raise OpsError("--interval must be positive")

    async def command(client: PoolClient) -> int:
        if args.once:
            status = await client.pool_status(at_risk_horizon=args.horizon)
            if args.json:
                _line(ops_tables.as_json(status))
            else:
                _out().print(ops_tables.pool_tables(status))
            return 0
        updates = client.watch_pool_status(at_risk_horizon=args.horizon, min_interval=args.interval)
        if args.json:
            async for status in updates:
                _line(ops_tables.as_json(status))
            return 0
        await _live(updates)
        return 0

    return run(args, command, interrupted=0)  # Ctrl-C is how one leaves the live view


async def _live(updates: AsyncIterator[pool_service_pb2.PoolStatus]) -> None:
    """Redraws the pool's tables in place at each update, until Ctrl-C."""
    from rich.live import Live

    from humanline import ops_tables

    with Live(console=_out(), auto_refresh=False, transient=False) as live:
        async for status in updates:
            live.update(ops_tables.pool_tables(status), refresh=True)


def agents(args: argparse.Namespace) -> int:
    from humanline import ops_tables

    async def command(client: PoolClient) -> int:
        listed = [a async for a in client.list_agents(state=args.state, skill=args.skill or "")]
        if args.json:
            for agent in listed:
                _line(ops_tables.as_json(agent))
        else:
            _out().print(ops_tables.agents_table(listed))
        return 0

    return run(args, command)


def quality(args: argparse.Namespace) -> int:
    from humanline import ops_tables

    since, until = _window(args)

    async def command(client: PoolClient) -> int:
        report = await client.quality_report(
            group_by=args.by, start=since, end=until, interaction_type=args.type or ""
        )
        if args.json:
            _line(ops_tables.as_json(report))
        else:
            _out().print(ops_tables.quality_tables(report, args.by))
        return 0

    return run(args, command)


def export(args: argparse.Namespace) -> int:
    from humanline import ops_tables

    since, until = _window(args)

    async def command(client: PoolClient) -> int:
        records = client.export_outcomes(
            start=since,
            end=until,
            interaction_type=args.type or "",
            outcomes=args.outcome,
            only_failures=args.only_failures,
            max_csat=args.max_csat or 0,
        )
        written = 0
        shown: list[pool_service_pb2.ExportOutcomesResponse] = []
        async for record in records:
            if args.json:
                document = ops_tables.as_json(record.handoff)
                document.update(agent_id=record.agent_id, notes=record.notes)
                _line(document)
            else:
                shown.append(record)
            written += 1
        if not args.json:
            _out().print(ops_tables.export_table(shown))
        print(f"{written} outcomes exported", file=sys.stderr)
        return 0

    return run(args, command)


def add_commands(sub: Any) -> None:
    """`pool`, `agents`, `quality` and `export` on the `humanline` command line."""
    watch = sub.add_parser(
        "pool", help="the pool and the queue, live: a table redrawn at each change (ops)"
    )
    add_connection(watch)
    watch.add_argument("--once", action="store_true", help="print the status now and exit")
    watch.add_argument(
        "--horizon", type=float, help="seconds ahead that count a handoff due soon (default 15)"
    )
    watch.add_argument(
        "--interval", type=float, help="seconds at least between updates (default 1)"
    )
    watch.set_defaults(func=pool)

    listing = sub.add_parser("agents", help="the agents: state, load, skills (ops)")
    add_connection(listing)
    listing.add_argument(
        "--state", choices=["offline", "available", "away", "busy", "reconnecting"]
    )
    listing.add_argument("--skill", help="only agents with this skill")
    listing.set_defaults(func=agents)

    report = sub.add_parser(
        "quality", help="resolution, CSAT, time to agent per group, and early warnings (ops)"
    )
    add_connection(report)
    report.add_argument(
        "--by",
        default="interaction_type",
        choices=["interaction_type", "agent", "skill", "risk_class"],
        help="what to group by (default interaction_type)",
    )
    report.add_argument("--since", help="requested since: ISO 8601, or a span (24h, 7d); 1 day")
    report.add_argument("--until", help="requested before: ISO 8601, or a span back; now")
    report.add_argument("--type", help="only this interaction type")
    report.set_defaults(func=quality)

    out = sub.add_parser(
        "export",
        help="completed handoffs and their outcomes (--json: JSON lines for retraining the bot)",
    )
    add_connection(out)
    out.add_argument("--since", help="completed since: ISO 8601, or a span (24h, 7d); 1 day")
    out.add_argument("--until", help="completed before: ISO 8601, or a span back; now")
    out.add_argument("--type", help="only this interaction type")
    out.add_argument(
        "--outcome",
        action="append",
        default=[],
        choices=["resolved", "unresolved", "transferred", "follow_up_needed"],
        help="only this outcome (repeat for several)",
    )
    out.add_argument(
        "--only-failures",
        action="store_true",
        help="not resolved, rated 1 or 2, or the customer contacted again",
    )
    out.add_argument("--max-csat", type=int, help="only those rated at most this (1-5)")
    out.set_defaults(func=export)
