"""The embedded store's timestamp text: the same as SQLAlchemy's SQLite DATETIME writes and
reads, so that stored values compare and sort as they always did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from humanline.store.sql.tables import UTCDateTime, sqlite_timestamp

DIALECT = sqlite.dialect()
SQLALCHEMY_BIND = sa.DateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
SQLALCHEMY_RESULT = sa.DateTime().dialect_impl(DIALECT).result_processor(DIALECT, None)
BIND = UTCDateTime().bind_processor(DIALECT)
RESULT = UTCDateTime().result_processor(DIALECT, None)
assert SQLALCHEMY_BIND is not None
assert SQLALCHEMY_RESULT is not None
assert BIND is not None
assert RESULT is not None

instants = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9000, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


@given(instants)
def test_text_is_sqlalchemys_and_reads_back_as_the_same_instant(value: datetime) -> None:
    text = BIND(value)
    assert text == SQLALCHEMY_BIND(value.astimezone(UTC).replace(tzinfo=None))
    back = RESULT(text)
    assert back == value
    assert back.tzinfo is UTC
    assert RESULT(text) == SQLALCHEMY_RESULT(text).replace(tzinfo=UTC)


@given(instants, instants)
def test_text_sorts_as_the_instants_do(a: datetime, b: datetime) -> None:
    assert (sqlite_timestamp(a) < sqlite_timestamp(b)) == (a < b)  # type: ignore[operator]


def test_naive_datetimes_and_none() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_timestamp(datetime(2026, 1, 1))
    assert sqlite_timestamp(None) is None
    assert RESULT(None) is None
    assert RESULT("2026-01-31 09:05:00") == datetime(2026, 1, 31, 9, 5, tzinfo=UTC)  # no fraction
