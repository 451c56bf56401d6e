"""The quality numbers kept incrementally, held to the report computed from every handoff.

Random histories (handoffs under way and final, with their offers, ratings with the final
handoff and later) are written to a real store on both backends; the facts of each final
handoff and rating are recorded as the service records them, and only part of them is rolled
up. For windows on bucket boundaries (seconds just now, minutes, hours and days further back)
the report from the buckets, the facts not rolled up and the handoffs under way equals the
report computed from the rows themselves: exactly, but for the time-to-agent percentiles,
within the bins' stated accuracy; by every dimension, with and without a type filter.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from humanline.domain.clock import SystemClock
from humanline.domain.model import HandoffState, OfferState, Outcome, RiskClass
from humanline.domain.quality import (
    ALL,
    MIN_WAIT,
    NO_SKILL,
    UNKNOWN_RISK,
    WAIT_ACCURACY,
    Alert,
    Dimension,
    GroupQuality,
    HandoffSample,
    OfferSample,
    Resolution,
    Tallies,
    alerts,
    bucket_start,
    fold,
    percentile,
)
from humanline.service.quality import early_warning_tallies, rolled_up
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import handoffs, offers, quality_facts, quality_rollups
from tests.support.quality import window_tallies
from tests.unit.builders import profile

HISTORIES = 6
TYPES = ("refund", "dispute", "lookup")
AGENTS = ("a0", "a1", "a2", "a3")
FINAL = (HandoffState.COMPLETED, HandoffState.CANCELLED, HandoffState.EXPIRED)
UNDER_WAY = (HandoffState.QUEUED, HandoffState.OFFERED, HandoffState.ASSIGNED)


# --- the report computed from every handoff: what the buckets are held to -------------------


def _keys(by: Dimension, h: HandoffSample | OfferSample) -> tuple[str, ...]:
    match by:
        case Dimension.INTERACTION_TYPE:
            return (h.interaction_type,)
        case Dimension.RISK_CLASS:
            return (UNKNOWN_RISK if h.risk_class is None else h.risk_class.name,)
        case Dimension.SKILL:
            return h.skills or (NO_SKILL,)
        case Dimension.AGENT:
            return () if h.agent_id is None else (h.agent_id,)


def _exact_group(key: str, hs: list[HandoffSample], os: list[OfferSample]) -> GroupQuality:
    completed = [h for h in hs if h.state is HandoffState.COMPLETED]
    resolved = sum(h.outcome is Outcome.RESOLVED for h in completed)
    ratings = [h.csat for h in hs if h.csat is not None]
    waits = [(h.assigned_at - h.created_at).total_seconds() for h in hs if h.assigned_at]
    handled = [h.handle_seconds for h in completed if h.handle_seconds is not None]
    taken = sum(
        o.state in (OfferState.ACCEPTED, OfferState.COMPLETED, OfferState.REVOKED) for o in os
    )
    counted = sum(
        o.state is not OfferState.PENDING and o.state is not OfferState.RESCINDED for o in os
    )

    def share(n: int, of: int) -> float | None:
        return n / of if of else None

    return GroupQuality(
        key=key,
        handoffs=len(hs),
        completed=len(completed),
        resolved=resolved,
        resolution_rate=share(resolved, len(completed)),
        csat_count=len(ratings),
        csat_mean=sum(ratings) / len(ratings) if ratings else None,
        csat_counts=tuple(ratings.count(level) for level in range(1, 6)),  # type: ignore[arg-type]
        within_target=share(
            sum(1 for h in hs if h.assigned_at and h.assigned_at <= h.deadline), len(hs)
        ),
        time_to_agent_p50=percentile(waits, 50),
        time_to_agent_p90=percentile(waits, 90),
        abandoned=share(sum(h.state is HandoffState.CANCELLED for h in hs), len(hs)),
        expired=share(sum(h.state is HandoffState.EXPIRED for h in hs), len(hs)),
        offers=counted,
        offer_accept_rate=share(taken, counted),
        handle_time_mean=sum(handled) / len(handled) if handled else None,
    )


def _exact(
    hs: Sequence[HandoffSample], os: Sequence[OfferSample], by: Dimension
) -> tuple[list[GroupQuality], GroupQuality]:
    grouped: dict[str, list[HandoffSample]] = defaultdict(list)
    answered: dict[str, list[OfferSample]] = defaultdict(list)
    for h in hs:
        for key in _keys(by, h):
            grouped[key].append(h)
    for o in os:
        if o.state in (OfferState.PENDING, OfferState.RESCINDED):
            continue  # not answered: in no group
        for key in _keys(by, o):
            answered[key].append(o)
    groups = [
        _exact_group(k, grouped[k], answered[k]) for k in sorted(grouped.keys() | answered.keys())
    ]
    return groups, _exact_group(ALL, list(hs), list(os))


def _same(rolled: GroupQuality, exact: GroupQuality) -> None:
    for name in GroupQuality.__dataclass_fields__:
        got, want = getattr(rolled, name), getattr(exact, name)
        if name.startswith("time_to_agent"):
            assert (got is None) == (want is None), name
            if want is not None:
                assert got == pytest.approx(want, rel=WAIT_ACCURACY, abs=MIN_WAIT), name
        elif isinstance(want, float):
            assert got == pytest.approx(want), name
        else:
            assert got == want, name


# --- random histories ------------------------------------------------------------------------


def _history(
    rng: random.Random, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Handoff and offer rows: created from a few seconds to four days ago."""
    handoff_rows, offer_rows = [], []
    for _ in range(rng.randint(0, 40)):
        hid = str(uuid.uuid4())
        ago = rng.choice([rng.uniform(0, 30), rng.uniform(0, 7200), rng.uniform(0, 4 * 86_400)])
        created = now - timedelta(seconds=ago)
        state = rng.choice([*FINAL, *FINAL, *UNDER_WAY])
        taker = rng.choice(AGENTS)
        assigned = None
        if state in (HandoffState.COMPLETED, HandoffState.ASSIGNED) or (
            state is HandoffState.CANCELLED and rng.random() < 0.2  # taken, requeued, cancelled
        ):
            assigned = created + timedelta(seconds=rng.choice([0, rng.uniform(0, 600)]))
        completed = state is HandoffState.COMPLETED
        skills = rng.sample(["billing", "orders"], rng.randint(0, 2))
        handoff_rows.append(
            {
                "id": hid,
                "request_id": str(uuid.uuid4()),
                "fingerprint": "x",
                "conversation_id": "c",
                "customer_id": "u",
                "interaction_type": rng.choice(TYPES),
                "required_skills": [[s, 1] for s in skills],
                "urgency": 2,
                "reason": "NOT_SPECIFIED",
                "summary": "",
                "state": state.value,
                "created_at": created,
                "deadline": created + timedelta(seconds=rng.uniform(30, 300)),
                "agent_id": taker if assigned else None,
                "assigned_at": assigned,
                "ended_at": now if state in FINAL else None,
                "outcome": rng.choice(list(Outcome)).value if completed else None,
                "handle_seconds": rng.uniform(10, 900)
                if completed and rng.random() < 0.9
                else None,
                "csat": rng.randint(1, 5) if completed and rng.random() < 0.5 else None,
                "risk_class": rng.choice([None, *(r.name for r in RiskClass)]),
                "changed_at": now,
            }
        )
        answers = [
            rng.choice([OfferState.DECLINED, OfferState.EXPIRED, OfferState.RESCINDED])
            for _ in range(rng.randint(0, 3))
        ]
        if completed:
            answers.append(OfferState.COMPLETED)
        elif state is HandoffState.ASSIGNED:
            answers.append(OfferState.ACCEPTED)
        elif state is HandoffState.OFFERED:
            answers.append(OfferState.PENDING)
        if assigned and rng.random() < 0.3:
            answers.append(OfferState.REVOKED)
        for answer in answers:
            offer_rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "handoff_id": hid,
                    "agent_id": taker
                    if answer in (OfferState.COMPLETED, OfferState.ACCEPTED)
                    else rng.choice(AGENTS),
                    "state": answer.value,
                    "created_at": created,
                    "expires_at": created + timedelta(seconds=30),
                }
            )
    return handoff_rows, offer_rows


def _samples(
    handoff_rows: list[dict[str, Any]], offer_rows: list[dict[str, Any]]
) -> tuple[list[HandoffSample], list[tuple[datetime, OfferSample]]]:
    """The rows as the report sees them; each offer with its handoff's creation time."""
    by_id = {h["id"]: h for h in handoff_rows}

    def risk(h: dict[str, Any]) -> RiskClass | None:
        return None if h["risk_class"] is None else RiskClass[h["risk_class"]]

    def skills(h: dict[str, Any]) -> tuple[str, ...]:
        return tuple(s for s, _ in h["required_skills"])

    hs = [
        HandoffSample(
            interaction_type=h["interaction_type"],
            risk_class=risk(h),
            skills=skills(h),
            agent_id=h["agent_id"] if h["assigned_at"] is not None else None,
            state=HandoffState(h["state"]),
            created_at=h["created_at"],
            deadline=h["deadline"],
            assigned_at=h["assigned_at"],
            outcome=None if h["outcome"] is None else Outcome(h["outcome"]),
            handle_seconds=h["handle_seconds"],
            csat=h["csat"],
        )
        for h in handoff_rows
    ]
    os = []
    for o in offer_rows:
        h = by_id[o["handoff_id"]]
        sample = OfferSample(
            h["interaction_type"], risk(h), skills(h), o["agent_id"], OfferState(o["state"])
        )
        os.append((h["created_at"], sample))
    return hs, os


def _windows(rng: random.Random, now: datetime) -> list[tuple[datetime, datetime]]:
    """Windows on boundaries of the finest buckets kept at both ends, and windows from such
    a boundary to now (open: read up to buckets still filling)."""
    found = []
    for resolution, reach in (
        (Resolution.SECOND, timedelta(minutes=50)),
        (Resolution.MINUTE, timedelta(days=2)),
        (Resolution.HOUR, timedelta(days=4)),
        (Resolution.DAY, timedelta(days=5)),
    ):
        for _ in range(2):
            a = bucket_start(now - reach * rng.random(), resolution)
            b = bucket_start(now - reach * rng.random(), resolution)
            if a != b:
                found.append((min(a, b), max(a, b)))
        found.append((bucket_start(now - reach * rng.random(), resolution), now))
    return found


async def _roll_up(store: SqlStore, limit: int) -> None:
    """What the quality monitor does, once: the oldest facts folded into the buckets."""
    async with store.read() as uow:
        facts = await uow.rollups.pending(limit)
    async with store.write() as uow:
        assert await uow.rollups.fold([f.id for f in facts], fold(facts))


async def _write(
    store: SqlStore, rng: random.Random, *, unfolded: bool = False
) -> tuple[list[HandoffSample], list[tuple[datetime, OfferSample]]]:
    """A random history, part of its facts folded (with `unfolded`, a few at most)."""
    async with store.write() as uow:
        conn = uow.agents._conn  # type: ignore[attr-defined]
        now = uow.now
        for table in (quality_facts, quality_rollups, offers, handoffs):
            await conn.execute(sa.delete(table))
        handoff_rows, offer_rows = _history(rng, now)
        # Some ratings come after their handoff was final: written then, recorded later.
        late = {h["id"]: h["csat"] for h in handoff_rows if h["csat"] and rng.random() < 0.5}
        for h in handoff_rows:
            row = {**h, "csat": None} if h["id"] in late else h
            await conn.execute(sa.insert(handoffs), [row])
        if offer_rows:
            await conn.execute(sa.insert(offers), offer_rows)
        for h in handoff_rows:
            if HandoffState(h["state"]) in FINAL:
                await uow.rollups.record_final(h["id"])
    folded = rng.randint(1, 60)
    await _roll_up(store, min(folded, 3) if unfolded else folded)  # the rest stays as facts
    async with store.write() as uow:
        conn = uow.agents._conn  # type: ignore[attr-defined]
        for handoff_id, csat in late.items():
            await conn.execute(
                sa.update(handoffs).where(handoffs.c.id == handoff_id).values(csat=csat)
            )
            await uow.rollups.record_rating(handoff_id)
    if rng.random() < 0.5 and not unfolded:
        await _roll_up(store, 1000)
    return _samples(handoff_rows, offer_rows)


async def test_the_kept_numbers_match_the_report_from_every_handoff(
    db_url: str,
) -> None:
    store = SqlStore(db_url, SystemClock(), pool_size=2)
    await store.open()
    try:
        async with store.write() as uow:
            for agent in AGENTS:
                await uow.agents.insert(agent, profile(skills={"billing": 3}), uow.now)
        for seed in range(HISTORIES):
            rng = random.Random(seed)
            hs, os = await _write(store, rng)
            async with store.read(snapshot=True) as uow:
                now = uow.now
                for since, until in _windows(rng, now):
                    for by in Dimension:
                        for kind in (None, rng.choice(TYPES)):
                            start, end, tallies = await window_tallies(uow, since, until, by, kind)
                            if by is Dimension.INTERACTION_TYPE and until < now:
                                assert (start, end) == (since, until)  # on boundaries: as asked

                            def within(at: datetime, of: str) -> bool:
                                return start <= at < end and kind in (None, of)  # noqa: B023

                            groups, whole = _exact(
                                [h for h in hs if within(h.created_at, h.interaction_type)],
                                [o for at, o in os if within(at, o.interaction_type)],
                                by,
                            )
                            report = tallies.report()
                            assert [g.key for g in report] == [g.key for g in groups]
                            for rolled, exact in zip(report, groups, strict=True):
                                _same(rolled, exact)
                            _same(tallies.overall(), whole)
    finally:
        await store.close()


# --- windows read together ---------------------------------------------------------------------


def _agree(together: Tallies, alone: Tallies, *, waits: bool) -> None:
    """The same groups with the same sums (the handle time's but for rounding: the database
    adds up the buckets, in any order); the same bins of waits, or none without them."""
    assert sorted(together.groups) == sorted(alone.groups)
    pairs = [(together.whole, alone.whole)]
    pairs += [(together.groups[key], alone.groups[key]) for key in sorted(alone.groups)]
    for got, want in pairs:
        assert got.waits == (want.waits if waits else Counter())
        assert got.handle_seconds == pytest.approx(want.handle_seconds)
        assert replace(got, waits=Counter(), handle_seconds=0.0) == replace(
            want, waits=Counter(), handle_seconds=0.0
        )


def _alerts(current: Tallies, before: Tallies) -> list[Alert]:
    return alerts(current.report(), current.overall(), before.report())


async def test_windows_read_together_are_each_as_read_alone(db_url: str) -> None:
    """The early-warning check reads its window and the window before at once, without the
    times to agent and all added up by the database (facts and handoffs under way too), and
    a report its window and its baseline at once: each window comes out as it does read
    alone (which the test above holds to every handoff), and so do the check's alerts."""
    store = SqlStore(db_url, SystemClock(), pool_size=2)
    await store.open()
    try:
        async with store.write() as uow:
            for agent in AGENTS:
                await uow.agents.insert(agent, profile(skills={"billing": 3}), uow.now)
        for seed in range(HISTORIES):
            rng = random.Random(1000 + seed)
            await _write(store, rng, unfolded=seed % 2 == 0)
            async with store.read(snapshot=True) as uow:
                now, by = uow.now, Dimension.INTERACTION_TYPE
                lengths = [timedelta(seconds=30), timedelta(hours=1), timedelta(days=1)]
                lengths.append(timedelta(seconds=rng.uniform(1, 2 * 86_400)))
                for length in lengths:
                    current, before = await early_warning_tallies(uow, length)
                    _, _, current_alone = await window_tallies(uow, now - length, now, by)
                    _, _, before_alone = await window_tallies(
                        uow, now - 2 * length, now - length, by
                    )
                    _agree(current, current_alone, waits=False)
                    _agree(before, before_alone, waits=False)
                    assert _alerts(current, before) == _alerts(current_alone, before_alone)
                for since, until in _windows(rng, now):
                    for by in Dimension:
                        for kind in (None, rng.choice(TYPES)):
                            window = rolled_up(uow, since, until, by)
                            length = window.end - window.start
                            baseline = rolled_up(uow, window.start - length, window.start, by)
                            together = await uow.rollups.tallies([window, baseline], by, kind)
                            for read, alone in zip(together, (window, baseline), strict=True):
                                (expected,) = await uow.rollups.tallies([alone], by, kind)
                                _agree(read, expected, waits=True)
    finally:
        await store.close()
