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
handoffs behind them. It reads its window and its baseline together, a statement for each
part (each window's SELECT tagged with its index, joined by UNION ALL), and the database
adds up the buckets' counts; only their bins of waits are added up here. An early-warning
check needs no waits and groups by type alone, so the database adds up all of it, facts and
handoffs under way too, in one statement (`type_tallies`).
"""

from __future__ import annotations

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
    Tallies,
    Tally,
    Window,
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


_Query = sa.Select[Any] | sa.CompoundSelect[Any]


def _tagged(parts: Sequence[sa.Select[Any]]) -> _Query:
    """One SELECT per window, each tagged with the window's index (`window`), as one
    statement (a row in two windows comes once for each)."""
    return parts[0] if len(parts) == 1 else sa.union_all(*parts)


def _window(index: int) -> sa.Label[int]:
    return sa.literal_column(str(index), sa.Integer()).label("window")


@_statement
def _facts_within(windows: int, typed: bool) -> _Query:
    """The facts not folded yet of each window's handoffs."""
    f = quality_facts.c
    parts = []
    for w in range(windows):
        part = sa.select(_window(w), quality_facts).where(
            f.created_at >= _p(f"start{w}"), f.created_at < _p(f"end{w}")
        )
        if typed:
            part = part.where(f.interaction_type == _p("interaction_type"))
        parts.append(part)
    return _tagged(parts)


@_statement
def _under_way(windows: int, typed: bool) -> _Query:
    """The handoffs created in each window that are not final yet (ix_handoffs_under_way),
    each with its answered offers: a row per answered offer (`offer_state` and
    `offer_agent_id`), or one with those NULL if it has none."""
    h, o = handoffs.c, offers.c
    answered = sa.and_(o.handoff_id == h.id, o.state.in_([_const(s) for s in _ANSWERED]))
    parts = []
    for w in range(windows):
        part = (
            sa.select(
                _window(w),
                h.id,
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
                o.agent_id.label("offer_agent_id"),
                o.state.label("offer_state"),
            )
            .select_from(handoffs.outerjoin(offers, answered))
            .where(
                h.state.in_([_const(s) for s in _UNDER_WAY]),
                h.created_at >= _p(f"start{w}"),
                h.created_at < _p(f"end{w}"),
            )
        )
        if typed:
            part = part.where(h.interaction_type == _p("interaction_type"))
        parts.append(part)
    return _tagged(parts)


def _in_buckets(
    window: int, spans: int, typed: bool, dimension: Dimension | None = None
) -> list[sa.ColumnElement[bool]]:
    """The rollup rows of window `window`'s `spans` ranges of buckets, of two dimensions: the
    report's and, for the whole, the types' (or of `dimension` alone)."""
    r = quality_rollups.c
    ranges = [
        sa.and_(
            r.resolution == _p(f"resolution{window}_{i}"),
            r.bucket_start >= _p(f"start{window}_{i}"),
            r.bucket_start < _p(f"end{window}_{i}"),
        )
        for i in range(spans)
    ]
    found = [
        r.dimension == _const(dimension)
        if dimension is not None
        else r.dimension.in_([_p("dimension"), _const(Dimension.INTERACTION_TYPE)]),
        sa.or_(*ranges) if ranges else sa.false(),
    ]
    if typed:
        found.append(r.interaction_type == _p("interaction_type"))
    return found


@_statement
def _bucket_sums(shape: tuple[int, ...], typed: bool) -> _Query:
    """Each window's buckets added up per group (`shape`: how many spans each window has):
    every count is a sum, so the database adds them, and a window's read sends a row per
    group rather than per bucket."""
    r = quality_rollups.c
    sums = [sa.func.sum(r[name]).label(name) for name in (*_COUNTS, *_CSAT)]
    return _tagged(
        [
            sa.select(_window(w), r.dimension, r.group_key, *sums)
            .where(*_in_buckets(w, spans, typed))
            .group_by(r.dimension, r.group_key)
            for w, spans in enumerate(shape)
        ]
    )


@_statement
def _bucket_waits(shape: tuple[int, ...], typed: bool) -> _Query:
    """Each window's buckets' bins of waits, a row per bucket (added up here)."""
    r = quality_rollups.c
    return _tagged(
        [
            sa.select(_window(w), r.dimension, r.group_key, r.waits).where(
                *_in_buckets(w, spans, typed)
            )
            for w, spans in enumerate(shape)
        ]
    )


_ONE, _NONE = sa.literal_column("1", sa.Integer()), sa.literal_column("0", sa.Integer())


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, _ONE), else_=_NONE))


def _counted(s: Any) -> list[sa.Label[Any]]:
    """What `Tally.count` adds up, in SQL, over rows shaped like facts (a `kind`, and the
    handoff's state, or the offer's): the same rules, which the tests hold it to."""
    handoff = s.kind == _kind(HANDOFF)
    completed = sa.and_(handoff, s.state == _const(HandoffState.COMPLETED))
    handled = sa.and_(completed, s.handle_seconds.is_not(None))
    offer = sa.and_(s.kind == _kind(OFFER), s.state.in_([_const(o) for o in _ANSWERED]))
    rated = s.kind.in_([_kind(HANDOFF), _kind(RATING)])
    sums = {
        "handoffs": _count(handoff),
        "completed": _count(completed),
        "resolved": _count(sa.and_(completed, s.outcome == _const(Outcome.RESOLVED))),
        "within_target": _count(
            sa.and_(handoff, s.assigned_at.is_not(None), s.assigned_at <= s.deadline)
        ),
        "cancelled": _count(sa.and_(handoff, s.state == _const(HandoffState.CANCELLED))),
        "expired": _count(sa.and_(handoff, s.state == _const(HandoffState.EXPIRED))),
        "offers": _count(offer),
        "offers_taken": _count(
            sa.and_(offer, s.state.in_([_const(o) for o in sorted(ACCEPTED_OFFERS)]))
        ),
        "handled": _count(handled),
        "handle_seconds": sa.func.sum(
            sa.case((handled, s.handle_seconds), else_=sa.literal_column("0.0", sa.Float()))
        ),
    }
    for level, name in enumerate(_CSAT, 1):
        sums[name] = _count(sa.and_(rated, s.csat == sa.literal_column(str(level))))
    return [sums[name].label(name) for name in (*_COUNTS, *_CSAT)]


@_statement
def _type_sums(shape: tuple[int, ...]) -> _Query:
    """Each window's tallies by interaction type, without the times to agent, added up by
    the database (`shape`: how many spans each window has): its buckets' sums, and what its
    facts not folded yet, its handoffs under way and their answered offers add, counted as
    facts (the latter two as the facts they will become). A row per window and type."""
    f, h, o, r = quality_facts.c, handoffs.c, offers.c, quality_rollups.c
    under_way = h.state.in_([_const(s) for s in _UNDER_WAY])
    samples = []
    for w in range(len(shape)):
        within = (_p(f"start{w}"), _p(f"end{w}"))
        samples += [
            sa.select(
                _window(w),
                f.kind,
                f.interaction_type,
                f.state,
                f.outcome,
                f.handle_seconds,
                f.csat,
                f.assigned_at,
                f.deadline,
            ).where(f.created_at >= within[0], f.created_at < within[1]),
            sa.select(
                _window(w),
                _kind(HANDOFF),
                h.interaction_type,
                h.state,
                h.outcome,
                h.handle_seconds,
                h.csat,
                h.assigned_at,
                h.deadline,
            ).where(under_way, h.created_at >= within[0], h.created_at < within[1]),
            sa.select(
                _window(w),
                _kind(OFFER),
                h.interaction_type,
                o.state,
                *(sa.null() for _ in range(5)),
            )
            .select_from(offers.join(handoffs, h.id == o.handoff_id))
            .where(
                under_way,
                h.created_at >= within[0],
                h.created_at < within[1],
                o.state.in_([_const(s) for s in _ANSWERED]),
            ),
        ]
    counted = sa.union_all(*samples).subquery("samples")
    sums = [sa.func.sum(r[name]).label(name) for name in (*_COUNTS, *_CSAT)]
    return sa.union_all(
        sa.select(
            counted.c.window, counted.c.interaction_type.label("group_key"), *_counted(counted.c)
        ).group_by(counted.c.window, counted.c.interaction_type),
        *(
            sa.select(_window(w), r.group_key, *sums)
            .where(*_in_buckets(w, spans, typed=False, dimension=Dimension.INTERACTION_TYPE))
            .group_by(r.group_key)
            for w, spans in enumerate(shape)
        ),
    )


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


def _sums_of(m: Any) -> Tally:
    return Tally(
        **{name: m[name] for name in _COUNTS},
        csat=[m[name] for name in _CSAT],
    )


def _order(key: BucketKey) -> tuple[int, str, datetime, str, str]:
    """One order of rows for every writer (no two transactions wait for each other)."""
    return (key.resolution, key.dimension.value, key.start, key.interaction_type, key.group)


def rollup_row(key: BucketKey, t: Tally) -> dict[str, Any]:
    """The `quality_rollups` row of one bucket's tally."""
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


def _window_params(windows: Sequence[Window]) -> dict[str, Any]:
    """The bind parameters of `windows`: each one's ends and its spans'."""
    params: dict[str, Any] = {}
    for w, window in enumerate(windows):
        params |= {f"p_start{w}": window.start, f"p_end{w}": window.end}
        for i, span in enumerate(window.spans):
            params |= {
                f"p_resolution{w}_{i}": int(span.resolution),
                f"p_start{w}_{i}": span.start,
                f"p_end{w}_{i}": span.end,
            }
    return params


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
        rows = [rollup_row(key, sums[key]) for key in sorted(sums, key=_order)]
        if rows:
            await self._conn.execute(_add_to_rollups(self._conn.dialect.name), rows)
        return True

    async def tallies(
        self, windows: Sequence[Window], by: Dimension, interaction_type: str | None = None
    ) -> list[Tallies]:
        found = [Tallies() for _ in windows]
        if not windows:
            return found
        typed = interaction_type is not None
        params = _window_params(windows) | {"p_dimension": by.value}
        if typed:
            params["p_interaction_type"] = interaction_type
        shape = tuple(len(window.spans) for window in windows)
        for row in await self._conn.execute(_bucket_sums(shape, typed), params):
            m = row._mapping
            into, t = found[m["window"]], _sums_of(m)
            if m["dimension"] == Dimension.INTERACTION_TYPE.value:
                into.whole.add(t)
            if m["dimension"] == by.value:
                into.group(m["group_key"]).add(t)
        # A bucket's bins of waits come as a JSON object (bin -> count), some forty of them: added
        # up per group as they come, keys left as text, and only the sums made integers. (The
        # database adding them up, through json_each, costs SQLite more than this.)
        sums: dict[tuple[int, str, str], dict[str, int]] = {}
        for w, dimension, group_key, stored in await self._conn.execute(
            _bucket_waits(shape, typed), params
        ):
            into_bins = sums.setdefault((w, dimension, group_key), {})
            for key, count in stored.items():
                into_bins[key] = into_bins.get(key, 0) + count
        for (w, dimension, group_key), summed in sums.items():
            bins = {int(key): count for key, count in summed.items()}
            if dimension == Dimension.INTERACTION_TYPE.value:
                found[w].whole.waits.update(bins)
            if dimension == by.value:
                found[w].group(group_key).waits.update(bins)
        facts: list[list[Any]] = [[] for _ in windows]
        for row in await self._conn.execute(_facts_within(len(windows), typed), params):
            facts[row._mapping["window"]].append(row)
        live: list[list[HandoffSample]] = [[] for _ in windows]
        answered: list[list[OfferSample]] = [[] for _ in windows]
        seen: set[tuple[int, str]] = set()
        for row in await self._conn.execute(_under_way(len(windows), typed), params):
            m = row._mapping
            w = m["window"]
            if (w, m["id"]) not in seen:  # a row per answered offer: the handoff once
                seen.add((w, m["id"]))
                live[w].append(_handoff_sample(m))
            if m["offer_state"] is not None:
                answered[w].append(
                    _offer_sample({**m, "agent_id": m["offer_agent_id"], "state": m["offer_state"]})
                )
        for w, into in enumerate(found):
            tally(by, *_samples(facts[w]), into=into)
            tally(by, live[w], answered[w], into=into)
        return found

    async def type_tallies(self, windows: Sequence[Window]) -> list[Tallies]:
        found = [Tallies() for _ in windows]
        if not windows:
            return found
        shape = tuple(len(window.spans) for window in windows)
        for row in await self._conn.execute(_type_sums(shape), _window_params(windows)):
            m = row._mapping
            into, t = found[m["window"]], _sums_of(m)
            into.whole.add(t)
            into.group(m["group_key"]).add(t)
        return found
