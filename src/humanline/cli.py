"""The `humanline` command: `serve` the dispatch service, `migrate` its database."""

from __future__ import annotations

import argparse
import asyncio
import sys

from humanline import __version__
from humanline.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in (("listen", args.listen), ("database_url", args.database_url))
        if value is not None
    }
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from humanline import logs
    from humanline.grpc.server import serve

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from humanline.domain.clock import SystemClock
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

    revision = asyncio.run(run())
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
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
