"""Hot-path statements run on the driver directly, past SQLAlchemy's execution machinery.

Statements the repositories build once (marked with the `PREPARED` execution option) are
compiled once per connection and shape into a `Plan`: the SQL for the dialect, and the bind
and result processors SQLAlchemy itself would apply. The connections of the embedded store
(`sqlite.InlineConnection`) and of PostgreSQL (`postgres.PgConnection`) run plans on their
driver; SQLAlchemy's per-execution bookkeeping (building the execution context, keying the
compiled cache, and on asyncpg a greenlet switch) costs several times what the database
takes for an indexed statement. Results come as `Rows`, the part of SQLAlchemy's `Result`
the repositories use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.types import TypeEngine

PREPARED = "humanline_prepared"  # execution option of statements built once (`_statement`)

Processor = Callable[[Any], Any] | None
_REQUIRED = object()  # a parameter without a default


class Row(tuple[Any, ...]):
    """A result row: a tuple, with `_mapping` by column name like SQLAlchemy's `Row`."""

    __slots__ = ()
    _keys: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._keys, self, strict=True))


class Rows:
    """The rows of one statement, fetched: the part of SQLAlchemy's `Result` the
    repositories use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Row:
        if len(self._rows) != 1:
            raise (MultipleResultsFound if self._rows else NoResultFound)()
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


@dataclass(slots=True)
class Plan:
    """A prepared statement compiled for one dialect: its SQL, its parameters in order
    (name, default, bind processor), its result rows' class, their columns' types, and
    their value processors. Some dialects' processors depend on the type the database
    reports for a column (asyncpg's numbers): those are None until `resolve` is given it."""

    sql: str
    params: tuple[tuple[str, Any, Processor], ...]
    row: type[Row]
    types: tuple[TypeEngine[Any], ...]
    results: tuple[Processor, ...] | None

    @classmethod
    def compile(cls, statement: Any, keys: Sequence[str], dialect: Dialect) -> Plan | None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.post_compile_params or compiled.positiontup is None:
            return None  # expanding or literal-execute parameters: SQLAlchemy's own path
        # Column defaults SQLAlchemy computes before an INSERT or UPDATE (a column left out
        # of the values): scalar ones become the parameter's default, others take its path.
        prefetched: dict[str, Any] = {}
        for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
            default = column.onupdate if statement.is_update else column.default
            if default is None or not default.is_scalar:
                return None
            prefetched[column.key] = default.arg
        params = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            if bind.callable is not None:
                return None
            default = prefetched.get(name, _REQUIRED if bind.required else bind.value)
            params.append((name, default, bind.type.dialect_impl(dialect).bind_processor(dialect)))
        # A SELECT's columns, or a DML statement's RETURNING columns (none without one).
        columns = list(
            statement.selected_columns if statement.is_select else statement.exported_columns
        )
        row = type("Row", (Row,), {"__slots__": (), "_keys": tuple(c.key for c in columns)})
        types = tuple(c.type.dialect_impl(dialect) for c in columns)
        try:
            results: tuple[Processor, ...] | None = tuple(
                t.result_processor(dialect, None) for t in types
            )
        except TypeError:  # a processor that needs the database's column type
            results = None
        return cls(compiled.string, tuple(params), row, types, results)

    def resolve(self, dialect: Dialect, coltypes: Sequence[Any]) -> None:
        """Makes the result processors for the column types the database reported."""
        self.results = tuple(
            t.result_processor(dialect, c) for t, c in zip(self.types, coltypes, strict=True)
        )

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        bound = []
        for name, default, process in self.params:
            value = values.get(name, default)
            if value is _REQUIRED:
                raise sa.exc.ArgumentError(f"no value for the bind parameter {name!r}")
            bound.append(process(value) if process is not None else value)
        return bound

    @property
    def returns_rows(self) -> bool:
        """A SELECT, or a statement with RETURNING."""
        return bool(self.types)

    def rows(self, fetched: Iterable[Sequence[Any]], rowcount: int) -> Rows:
        """The driver's rows, with SQLAlchemy's result processing; `rowcount` is the
        driver's for a statement that returns none (-1 if unknown)."""
        if not self.types:
            return Rows([], rowcount)
        assert self.results is not None, "resolve() the plan first"
        processors = [(i, p) for i, p in enumerate(self.results) if p is not None]
        rows = []
        for raw in fetched:
            values = list(raw)
            for i, process in processors:
                values[i] = process(values[i])
            rows.append(self.row(values))
        return Rows(rows, len(rows))


class Plans:
    """The plans of one connection's prepared statements, compiled on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._plans: dict[tuple[int, tuple[str, ...]], Plan | None] = {}

    def plan(
        self, statement: sa.Executable, parameters: Any
    ) -> tuple[Plan, list[Mapping[str, Any]], bool] | None:
        """For a prepared statement with its parameters (a mapping, or a list of them to
        run it for each): its plan, the parameter sets, and whether there are many. None
        for any other statement, or one SQLAlchemy must run itself."""
        if not statement.get_execution_options().get(PREPARED):
            return None
        many = isinstance(parameters, list)
        values: list[Mapping[str, Any]] = parameters if many else [parameters or {}]
        key = (id(statement), tuple(values[0]) if values else ())
        try:
            plan = self._plans[key]
        except KeyError:
            plan = self._plans[key] = Plan.compile(statement, key[1], self._dialect)
        return None if plan is None else (plan, values, many)
