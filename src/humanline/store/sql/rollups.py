"""Quality numbers kept incrementally (the store port's `QualityRollups`).

A handoff that becomes final writes what it adds, in the same transaction: a fact for itself
and one per answered offer (`quality_facts`, copied from its rows by one INSERT ... SELECT);
a rating that comes later writes one more. The quality monitor reads the oldest facts, adds
them up per group and bucket of time (`domain.quality.fold`), and `fold` then adds those sums
to `quality_rollups` and deletes the facts in one transaction, which fails whole if any of
them was folded meanwhile: each counts once, never lost, never twice. On PostgreSQL one
replica folds at a time (a transaction-scoped advisory lock; the others skip their turn).

A report adds up the buckets that tile its window, the facts not rolled up yet and the
handoffs still under way, on one snapshot: its cost follows the buckets and groups, not the
handoffs behind them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from humanline.domain.model import HandoffState, OfferState, Outcome
from humanline.domain.quality import (
    ACCEPTED_OFFERS,
    UNTAKEN_OFFERS,
    BucketKey,
    Dimension,
    Fact,
    HandoffSample,
    OfferSample,
    RatingSample,
    Sample,
    Span,
    Tallies,
    Tally,
    tally,
)
from humanline.store.port import StoreConflict
from humanline.store.sql.repositories import (
    SqlConnection,
    _const,
    _p,
    _risk,
    _skill_names,
    _statement,
    _upsert,
)
from humanline.store.sql.tables import handoffs, offers, quality_facts, quality_rollups

ROLLUP_LOCK = 7_283_001  # pg_advisory_xact_lock key: one replica rolls up at a time
FACTS_PER_DELETE = 500  # ids per DELETE of rolled-up facts

_FINAL = (HandoffState.COMPLETED, HandoffState.CANCELLED, HandoffState.EXPIRED)
_UNDER_WAY = (HandoffState.QUEUED, HandoffState.OFFERED, HandoffState.ASSIGNED)
_ANSWERED = sorted(ACCEPTED_OFFERS | UNTAKEN_OFFERS)
_FACT_COLUMNS = (
    "kind",
    "created_at",
    "interaction_type",
    "risk_class",
    "required_skills",
    "agent_id",
    "state",
    "deadline",
    "assigned_at",
    "outcome",
    "handle_seconds",
    "csat",
)
_COUNTS = (
    "handoffs",
    "completed",
    "resolved",
    "within_target",
    "cancelled",
    "expired",
    "offers",
    "offers_taken",
    "handled",
    "handle_seconds",
)
_CSAT = tuple(f"csat_{level}" for level in range(1, 6))
_KEY = ("resolution", "dimension", "bucket_start", "interaction_type", "group_key")
HANDOFF, OFFER, RATING = "HANDOFF", "OFFER", "RATING"


def _kind(name: str) -> sa.ColumnElement[str]:
    return sa.literal_column(f"'{name}'", sa.String())


@_statement
def _record_final() -> sa.Insert:
    """The facts of a handoff just made final: its own and its answered offers'."""
    h, o = handoffs.c, offers.c
    own = sa.select(
        _kind(HANDOFF),
        h.created_at,
        h.interaction_type,
        h.risk_class,
        h.required_skills,
        h.agent_id,
        h.state,
        h.deadline,
        h.assigned_at,
        h.outcome,
        h.handle_seconds,
        h.csat,
    ).where(h.id == _p("handoff_id"))
    answered = (
        sa.select(
            _kind(OFFER),
            h.created_at,
            h.interaction_type,
            h.risk_class,
            h.required_skills,
            o.agent_id,
            o.state,
            *(sa.null() for _ in range(5)),
        )
        .select_from(offers.join(handoffs, h.id == o.handoff_id))
        .where(o.handoff_id == _p("handoff_id"), o.state.in_([_const(s) for s in _ANSWERED]))
    )
    return sa.insert(quality_facts).from_select(list(_FACT_COLUMNS), sa.union_all(own, answered))


@_statement
def _record_rating() -> sa.Insert:
    h = handoffs.c
    rating = sa.select(
        _kind(RATING),
        h.created_at,
        h.interaction_type,
        h.risk_class,
        h.required_skills,
        sa.case((h.assigned_at.is_not(None), h.agent_id), else_=None),
        *(sa.null() for _ in range(5)),
        h.csat,
    ).where(h.id == _p("handoff_id"), h.csat.is_not(None))
    return sa.insert(quality_facts).from_select(list(_FACT_COLUMNS), rating)


@_statement
def _oldest_facts() -> sa.Select[Any]:
    return sa.select(quality_facts).order_by(quality_facts.c.id).limit(_p("limit"))


@_statement
def _facts_within(typed: bool) -> sa.Select[Any]:
    f = quality_facts.c
    stmt = sa.select(quality_facts).where(f.created_at >= _p("start"), f.created_at < _p("end"))
    return stmt.where(f.interaction_type == _p("interaction_type")) if typed else stmt


@_statement
def _under_way(typed: bool) -> sa.Select[Any]:
    """The handoffs created in the window that are not final yet (ix_handoffs_under_way)."""
    h = handoffs.c
    stmt = sa.select(
        h.interaction_type,
        h.risk_class,
        h.required_skills,
        h.agent_id,
        h.state,
        h.created_at,
        h.deadline,
        h.assigned_at,
        h.outcome,
        h.handle_seconds,
        h.csat,
    ).where(
        h.state.in_([_const(s) for s in _UNDER_WAY]),
        h.created_at >= _p("start"),
        h.created_at < _p("end"),
    )
    return stmt.where(h.interaction_type == _p("interaction_type")) if typed else stmt


@_statement
def _answered_under_way(typed: bool) -> sa.Select[Any]:
    """The answered offers of those handoffs."""
    h, o = handoffs.c, offers.c
    stmt = (
        sa.select(h.interaction_type, h.risk_class, h.required_skills, o.agent_id, o.state)
        .select_from(handoffs.join(offers, o.handoff_id == h.id))
        .where(
            h.state.in_([_const(s) for s in _UNDER_WAY]),
            h.created_at >= _p("start"),
            h.created_at < _p("end"),
            o.state.in_([_const(s) for s in _ANSWERED]),
        )
    )
    return stmt.where(h.interaction_type == _p("interaction_type")) if typed else stmt


@_statement
def _buckets(spans: int, typed: bool) -> sa.Select[Any]:
    """The rollup rows of two dimensions (the report's and, for the whole, the types') in
    `spans` ranges of buckets."""
    r = quality_rollups.c
    ranges = [
        sa.and_(
            r.resolution == _p(f"resolution{i}"),
            r.bucket_start >= _p(f"start{i}"),
            r.bucket_start < _p(f"end{i}"),
        )
        for i in range(spans)
    ]
    stmt = sa.select(quality_rollups).where(
        r.dimension.in_([_p("dimension"), _const(Dimension.INTERACTION_TYPE)]),
        sa.or_(*ranges) if ranges else sa.false(),
    )
    return stmt.where(r.interaction_type == _p("interaction_type")) if typed else stmt


# A bucket's bins of waits and the batch's, added up in the upsert itself (no read first).
_ADD_WAITS = {
    "postgresql": """COALESCE((
        SELECT jsonb_object_agg(key, total) FROM (
            SELECT key, sum(value::bigint) AS total FROM (
                SELECT key, value FROM jsonb_each_text(quality_rollups.waits)
                UNION ALL SELECT key, value FROM jsonb_each_text(excluded.waits)
            ) AS bins GROUP BY key
        ) AS summed
    ), '{}'::jsonb)""",
    "sqlite": """(
        SELECT json_group_object(key, total) FROM (
            SELECT key, sum(value) AS total FROM (
                SELECT key, value FROM json_each(quality_rollups.waits)
                UNION ALL SELECT key, value FROM json_each(excluded.waits)
            ) GROUP BY key
        )
    )""",
}


@_statement
def _add_to_rollups(dialect: str) -> sa.Insert:
    """Adds a batch's tallies to their buckets' rows (new rows for new keys): every column is
    a sum, so the upsert adds rather than overwrites."""
    insert = _upsert(quality_rollups, dialect)
    rows = quality_rollups.c
    sums: dict[str, Any] = {n: rows[n] + insert.excluded[n] for n in (*_COUNTS, *_CSAT)}
    sums["waits"] = sa.text(_ADD_WAITS[dialect])
    return insert.on_conflict_do_update(index_elements=[rows[name] for name in _KEY], set_=sums)


def _handoff_sample(m: Any) -> HandoffSample:
    return HandoffSample(
        interaction_type=m["interaction_type"],
        risk_class=_risk(m["risk_class"]),
        skills=_skill_names(m["required_skills"]),
        agent_id=m["agent_id"] if m["assigned_at"] is not None else None,
        state=HandoffState(m["state"]),
        created_at=m["created_at"],
        deadline=m["deadline"],
        assigned_at=m["assigned_at"],
        outcome=None if m["outcome"] is None else Outcome(m["outcome"]),
        handle_seconds=m["handle_seconds"],
        csat=m["csat"],
    )


def _offer_sample(m: Any) -> OfferSample:
    return OfferSample(
        m["interaction_type"],
        _risk(m["risk_class"]),
        _skill_names(m["required_skills"]),
        m["agent_id"],
        OfferState(m["state"]),
    )


def _rating_sample(m: Any) -> RatingSample:
    return RatingSample(
        m["interaction_type"],
        _risk(m["risk_class"]),
        _skill_names(m["required_skills"]),
        m["agent_id"],
        m["csat"],
    )


def _sample(m: Any) -> Sample:
    match m["kind"]:
        case "HANDOFF":
            return _handoff_sample(m)
        case "OFFER":
            return _offer_sample(m)
        case _:
            return _rating_sample(m)


def _samples(
    facts: Iterable[Any],
) -> tuple[list[HandoffSample], list[OfferSample], list[RatingSample]]:
    handoff_samples, offer_samples, ratings = [], [], []
    for row in facts:
        match sample := _sample(row._mapping):
            case HandoffSample():
                handoff_samples.append(sample)
            case OfferSample():
                offer_samples.append(sample)
            case RatingSample():
                ratings.append(sample)
    return handoff_samples, offer_samples, ratings


def _tally_of(m: Any) -> Tally:
    return Tally(
        **{name: m[name] for name in _COUNTS},
        csat=[m[name] for name in _CSAT],
        waits=Counter({int(key): count for key, count in m["waits"].items()}),
    )


def _order(key: BucketKey) -> tuple[int, str, datetime, str, str]:
    """One order of rows for every writer (no two transactions wait for each other)."""
    return (key.resolution, key.dimension.value, key.start, key.interaction_type, key.group)


def _row_of(key: BucketKey, t: Tally) -> dict[str, Any]:
    return {
        "resolution": key.resolution.value,
        "dimension": key.dimension.value,
        "bucket_start": key.start,
        "interaction_type": key.interaction_type,
        "group_key": key.group,
        **{name: getattr(t, name) for name in _COUNTS},
        **dict(zip(_CSAT, t.csat, strict=True)),
        "waits": {str(key): count for key, count in sorted(t.waits.items())},
    }


class SqlQualityRollups:
    """Facts recorded with the changes that make them, rolled up into bucketed tallies."""

    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def record_final(self, handoff_id: str) -> None:
        await self._conn.execute(_record_final(), {"p_handoff_id": handoff_id})

    async def record_rating(self, handoff_id: str) -> None:
        await self._conn.execute(_record_rating(), {"p_handoff_id": handoff_id})

    async def pending(self, limit: int) -> list[Fact]:
        rows = await self._conn.execute(_oldest_facts(), {"p_limit": limit})
        found = []
        for row in rows:
            m = row._mapping
            found.append(Fact(m["id"], m["created_at"], _sample(m)))
        return found

    async def fold(self, fact_ids: Sequence[int], sums: Mapping[BucketKey, Tally]) -> bool:
        if self._conn.dialect.name == "postgresql":
            locked = await self._conn.execute(
                sa.select(sa.func.pg_try_advisory_xact_lock(ROLLUP_LOCK))
            )
            if not locked.scalar():
                return False
        deleted = 0
        for i in range(0, len(fact_ids), FACTS_PER_DELETE):
            chunk = fact_ids[i : i + FACTS_PER_DELETE]
            done = await self._conn.execute(
                sa.delete(quality_facts).where(quality_facts.c.id.in_(chunk))
            )
            deleted += int(done.rowcount)
        if deleted != len(fact_ids):  # folded meanwhile, by another replica's rollup
            raise StoreConflict(f"{len(fact_ids) - deleted} of the facts were folded meanwhile")
        rows = [_row_of(key, sums[key]) for key in sorted(sums, key=_order)]
        if rows:
            await self._conn.execute(_add_to_rollups(self._conn.dialect.name), rows)
        return True

    async def tallies(
        self,
        start: datetime,
        end: datetime,
        spans: Sequence[Span],
        by: Dimension,
        interaction_type: str | None = None,
    ) -> Tallies:
        typed = interaction_type is not None
        params: dict[str, Any] = {"p_start": start, "p_end": end}
        if typed:
            params["p_interaction_type"] = interaction_type
        into = Tallies()
        spans_params = {"p_dimension": by.value, **params}
        for i, span in enumerate(spans):
            spans_params |= {
                f"p_resolution{i}": int(span.resolution),
                f"p_start{i}": span.start,
                f"p_end{i}": span.end,
            }
        for row in await self._conn.execute(_buckets(len(spans), typed), spans_params):
            m = row._mapping
            t = _tally_of(m)
            if m["dimension"] == Dimension.INTERACTION_TYPE.value:
                into.whole.add(t)
            if m["dimension"] == by.value:
                into.group(m["group_key"]).add(t)
        tally(by, *_samples(await self._conn.execute(_facts_within(typed), params)), into=into)
        live = [
            _handoff_sample(row._mapping)
            for row in await self._conn.execute(_under_way(typed), params)
        ]
        answered = [
            _offer_sample(row._mapping)
            for row in await self._conn.execute(_answered_under_way(typed), params)
        ]
        tally(by, live, answered, into=into)
        return into
