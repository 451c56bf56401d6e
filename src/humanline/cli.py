"""The `humanline` command: `serve` the dispatch service, `migrate` its database."""

from __future__ import annotations

import argparse
import asyncio
import sys

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
