"""Logging: structlog, one JSON object per line on stdout, snake_case event names with ids.

Customer free text (summaries, notes) never reaches a log line: the code logs ids, enums and
counts only, and `redact` drops the known free-text keys anyway as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

FREE_TEXT_KEYS = frozenset({"summary", "notes", "note", "text", "message_body"})


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Removes customer free text from an event, whatever put it there."""
    for key in FREE_TEXT_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


def configure(level: str = "info", fmt: str = "json") -> None:
    """Sets up structlog and the standard library's logging (for grpc and SQLAlchemy)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
