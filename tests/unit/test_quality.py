"""The quality report's arithmetic, against a small window worked out by hand."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from humanline.domain.model import HandoffState, OfferState, Outcome, RiskClass
from humanline.domain.quality import (
    ALL,
    ALPHA,
    MIN_SAMPLES,
    MIN_WAIT,
    NO_SKILL,
    RESOLUTIONS,
    UNKNOWN_RISK,
    WAIT_ACCURACY,
    Dimension,
    Fact,
    GroupQuality,
    HandoffSample,
    Kept,
    Metric,
    OfferSample,
    Proportion,
    RatingSample,
    Reference,
    Span,
    Tally,
    alerts,
    binned_percentile,
    bucket_start,
    fold,
    groups_of,
    percentile,
    rolled_up_window,
    tally,
    wait_bin,
    z_test,
)
from humanline.domain.quality import Resolution as R
from tests.unit.builders import at

S = HandoffState


def _handoff(
    kind: str,
    state: HandoffState,
    *,
    agent: str | None = None,
    waited: float | None = None,
    target: float = 60,
    outcome: Outcome | None = None,
    handle: float | None = None,
    csat: int | None = None,
    skills: tuple[str, ...] = ("billing",),
    risk: RiskClass | None = RiskClass.HIGH,
) -> HandoffSample:
    return HandoffSample(
        interaction_type=kind,
        risk_class=risk,
        skills=skills,
        agent_id=agent,
        state=state,
        created_at=at(0),
        deadline=at(target),
        assigned_at=None if waited is None else at(waited),
        outcome=outcome,
        handle_seconds=handle,
        csat=csat,
    )


# Five billing disputes and two order lookups:
WINDOW = [
    _handoff("dispute", S.COMPLETED, agent="ann", waited=10, outcome=Outcome.RESOLVED,
             handle=300, csat=5),
    _handoff("dispute", S.COMPLETED, agent="ann", waited=30, outcome=Outcome.UNRESOLVED,
             handle=600, csat=1),
    _handoff("dispute", S.COMPLETED, agent="bob", waited=90, outcome=Outcome.RESOLVED,
             handle=420, csat=4),  # late: past its 60 s target
    _handoff("dispute", S.CANCELLED),
    _handoff("dispute", S.EXPIRED),
    _handoff("lookup", S.COMPLETED, agent="bob", waited=5, outcome=Outcome.RESOLVED, handle=60,
             skills=("orders",), risk=RiskClass.LOW),
    _handoff("lookup", S.ASSIGNED, agent="cid", waited=15, skills=(), risk=None),
]  # fmt: skip
OFFERS = [
    OfferSample("dispute", RiskClass.HIGH, ("billing",), "ann", OfferState.COMPLETED),
    OfferSample("dispute", RiskClass.HIGH, ("billing",), "ann", OfferState.COMPLETED),
    OfferSample("dispute", RiskClass.HIGH, ("billing",), "ann", OfferState.DECLINED),
    OfferSample("dispute", RiskClass.HIGH, ("billing",), "bob", OfferState.EXPIRED),
    OfferSample("dispute", RiskClass.HIGH, ("billing",), "bob", OfferState.COMPLETED),
    OfferSample("lookup", RiskClass.LOW, ("orders",), "bob", OfferState.COMPLETED),
    OfferSample("lookup", None, (), "cid", OfferState.ACCEPTED),
]


def _by(dimension: Dimension) -> dict[str, GroupQuality]:
    return {g.key: g for g in tally(dimension, WINDOW, OFFERS).report()}


def test_by_interaction_type_every_number_as_worked_out_by_hand() -> None:
    groups = _by(Dimension.INTERACTION_TYPE)
    assert list(groups) == ["dispute", "lookup"]
    dispute = groups["dispute"]
    assert (dispute.handoffs, dispute.completed, dispute.resolved) == (5, 3, 2)
    assert dispute.resolution_rate == pytest.approx(2 / 3)
    assert dispute.csat_count == 3
    assert dispute.csat_mean == pytest.approx((5 + 1 + 4) / 3)
    assert dispute.csat_counts == (1, 0, 0, 1, 1)
    assert dispute.satisfied == pytest.approx(2 / 3)
    assert dispute.within_target == pytest.approx(2 / 5)  # 10 s and 30 s, of five
    # Times to agent are kept in log-scale bins: within WAIT_ACCURACY (1%) of the exact.
    assert dispute.time_to_agent_p50 == pytest.approx(30, rel=WAIT_ACCURACY)
    assert dispute.time_to_agent_p90 == pytest.approx(30 + 0.8 * 60, rel=WAIT_ACCURACY)
    assert dispute.abandoned == pytest.approx(1 / 5)
    assert dispute.expired == pytest.approx(1 / 5)
    assert dispute.offers == 5
    assert dispute.offer_accept_rate == pytest.approx(3 / 5)
    assert dispute.handle_time_mean == pytest.approx(440)
    lookup = groups["lookup"]
    assert (lookup.handoffs, lookup.completed, lookup.resolution_rate) == (2, 1, 1.0)
    assert lookup.csat_count == 0
    assert lookup.csat_mean is None
    assert lookup.satisfied is None
    assert lookup.within_target == 1.0
    assert lookup.offer_accept_rate == 1.0


def test_by_agent_handoffs_count_for_who_took_them_offers_for_who_was_offered() -> None:
    groups = _by(Dimension.AGENT)
    assert list(groups) == ["ann", "bob", "cid"]  # nobody took the cancelled or expired
    ann, bob = groups["ann"], groups["bob"]
    assert (ann.handoffs, ann.resolved, ann.resolution_rate) == (2, 1, 0.5)
    assert ann.offer_accept_rate == pytest.approx(2 / 3)
    assert (bob.handoffs, bob.resolved) == (2, 2)
    assert bob.offers == 3
    assert bob.offer_accept_rate == pytest.approx(2 / 3)
    assert bob.within_target == 0.5  # the dispute came late
    assert groups["cid"].completed == 0
    assert groups["cid"].resolution_rate is None


def test_by_skill_and_by_risk_class() -> None:
    skills = _by(Dimension.SKILL)
    assert list(skills) == [NO_SKILL, "billing", "orders"]
    assert skills["billing"].handoffs == 5
    risks = _by(Dimension.RISK_CLASS)
    assert list(risks) == [UNKNOWN_RISK, "HIGH", "LOW"]
    assert risks["HIGH"].handoffs == 5
    assert risks[UNKNOWN_RISK].handoffs == 1


def test_an_empty_window_has_no_groups() -> None:
    assert tally(Dimension.INTERACTION_TYPE).report() == []


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, None), ([3.0], 90, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([0, 10], 90, 9.0)],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float | None
) -> None:
    assert percentile(values, q) == expected


def test_waits_are_measured_from_creation() -> None:
    late = _handoff("x", S.ASSIGNED, agent="a", waited=120, target=60)
    (group,) = tally(Dimension.INTERACTION_TYPE, [late]).report()
    assert group.time_to_agent_p50 == pytest.approx(120, rel=WAIT_ACCURACY)
    assert group.within_target == 0.0


# --- early warning ---------------------------------------------------------------------------


def _resolved(key: str, resolved: int, completed: int) -> GroupQuality:
    """A group with `completed` handoffs, `resolved` of them resolved, and nothing else."""
    samples = [
        _handoff(key, S.COMPLETED, agent="a", waited=1, outcome=Outcome.RESOLVED)
        for _ in range(resolved)
    ] + [
        _handoff(key, S.COMPLETED, agent="a", waited=1, outcome=Outcome.UNRESOLVED)
        for _ in range(completed - resolved)
    ]
    (group,) = tally(Dimension.INTERACTION_TYPE, samples).report()
    return group


def _pool(*groups: GroupQuality) -> GroupQuality:
    resolved = sum(g.resolved for g in groups)
    completed = sum(g.completed for g in groups)
    return replace(_resolved(ALL, resolved, completed), key=ALL)


def test_the_z_test_and_wilson_interval_as_computed_by_hand() -> None:
    z, p_value = z_test(Proportion(10, 40), Proportion(80, 100))
    # pooled 90/140; se = sqrt(.642857 * .357143 * (1/40 + 1/100)) = .0896421; the
    # continuity correction takes (1/40 + 1/100) / 2 = .0175 off the gap.
    assert z == pytest.approx((0.25 - 0.8 + 0.0175) / 0.0896421, rel=1e-5)
    assert p_value == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)))
    assert p_value < 1e-8
    low, high = Proportion(8, 10).wilson()
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert Proportion(0, 0).wilson() == (0.0, 1.0)


def test_a_group_far_below_the_rest_of_the_pool_is_flagged_with_its_numbers() -> None:
    weak, fine = _resolved("fraud", 15, 40), _resolved("lookup", 170, 200)
    (alert,) = alerts([weak, fine], _pool(weak, fine))
    assert (alert.key, alert.metric, alert.reference) == (
        "fraud",
        Metric.RESOLUTION_RATE,
        Reference.POOL,
    )
    assert (alert.observed, alert.expected) == (Proportion(15, 40), Proportion(170, 200))
    assert alert.gap == pytest.approx(0.85 - 0.375)
    assert alert.p_value < ALPHA
    assert "z-test" in alert.test


def test_a_group_with_too_few_samples_is_never_flagged() -> None:
    weak, fine = _resolved("fraud", 0, MIN_SAMPLES - 1), _resolved("lookup", 190, 200)
    assert alerts([weak, fine], _pool(weak, fine)) == []


def test_a_group_below_its_own_baseline_is_flagged_though_the_pool_fell_too() -> None:
    now_a, now_b = _resolved("a", 30, 60), _resolved("b", 30, 60)
    then_a = _resolved("a", 54, 60)
    found = alerts([now_a, now_b], _pool(now_a, now_b), baseline=[then_a])
    assert [(f.key, f.reference) for f in found] == [("a", Reference.BASELINE)]


def _played(rng: random.Random, rates: dict[str, float], n: int) -> list[GroupQuality]:
    return [
        _resolved(key, sum(rng.random() < rate for _ in range(n)), n) for key, rate in rates.items()
    ]


def test_a_planted_drop_fires_and_noise_does_not() -> None:
    """Seeded: six types resolving 85% of 80 handoffs each, in 300 windows. With one type
    dropped to 55% it is flagged in nearly every window; without, a flag (any type) is rare."""
    rng = random.Random(7)
    steady = dict.fromkeys(("a", "b", "c", "d", "e", "f"), 0.85)
    caught = noise = 0
    for _ in range(300):
        groups = _played(rng, {**steady, "c": 0.55}, 80)
        caught += any(a.key == "c" for a in alerts(groups, _pool(*groups)))
        quiet = _played(rng, steady, 80)
        noise += len(alerts(quiet, _pool(*quiet)))
    assert caught >= 0.95 * 300
    assert noise <= 5  # expected 6 types x 300 windows x 0.001 = 1.8


# --- the sums the store keeps, and the buckets it keeps them in ----------------------------

waits = st.lists(st.floats(min_value=0, max_value=86_400, allow_nan=False), max_size=60)


@given(waits, st.sampled_from([0, 10, 50, 90, 99, 100]))
def test_binned_percentiles_are_within_their_stated_accuracy(values: list[float], q: float) -> None:
    bins = Counter(wait_bin(v) for v in values)
    exact, binned = percentile(values, q), binned_percentile(bins, q)
    if exact is None:
        assert binned is None
    else:
        assert binned == pytest.approx(exact, rel=WAIT_ACCURACY, abs=MIN_WAIT)


@given(st.lists(st.integers(0, len(WINDOW) - 1)), st.lists(st.integers(0, len(OFFERS) - 1)))
def test_tallies_of_two_parts_add_up_to_the_tally_of_both(
    handoff_picks: list[int], offer_picks: list[int]
) -> None:
    picked = [WINDOW[i] for i in handoff_picks]
    answered = [OFFERS[i] for i in offer_picks]
    half, offers_half = len(picked) // 2, len(answered) // 3
    whole = tally(Dimension.SKILL, picked, answered)
    first = tally(Dimension.SKILL, picked[:half], answered[:offers_half])
    second = tally(Dimension.SKILL, picked[half:], answered[offers_half:])
    for key, part in second.groups.items():
        first.group(key).add(part)
    first.whole.add(second.whole)
    assert first.report() == whole.report()
    assert first.overall() == whole.overall()


def test_a_late_rating_counts_as_the_handoffs_own() -> None:
    rated = replace(WINDOW[0], csat=None)
    late = RatingSample("dispute", RiskClass.HIGH, ("billing",), "ann", 5)
    split = tally(Dimension.AGENT, [rated], [], [late])
    whole = tally(Dimension.AGENT, [WINDOW[0]])
    assert split.report() == whole.report()
    assert split.overall() == whole.overall()


NOW = datetime(2026, 12, 7, 10, 42, 17, tzinfo=UTC)
moments = st.integers(0, 90 * 86_400).map(lambda s: NOW - timedelta(seconds=s))
# Moments that share buckets often: a few days, in steps of 17 minutes and some seconds.
clustered = st.builds(
    lambda days, steps, s: NOW - timedelta(days=days, minutes=17 * steps, seconds=s),
    st.integers(0, 2),
    st.integers(0, 90),
    st.sampled_from([0, 1, 59]),
)
samples = st.sampled_from([*WINDOW, *OFFERS, RatingSample("lookup", None, (), "cid", 2)])


@given(st.lists(st.tuples(clustered, samples), max_size=40))
def test_each_bucket_folds_exactly_the_facts_created_within_it(
    picked: list[tuple[datetime, HandoffSample | OfferSample | RatingSample]],
) -> None:
    facts = [Fact(i, created, sample) for i, (created, sample) in enumerate(picked)]
    folded = fold(facts)
    expected = set()
    for fact in facts:
        for by, key in groups_of(fact.sample):
            for resolution in RESOLUTIONS[by]:
                start = bucket_start(fact.created_at, resolution)
                expected.add((resolution, by, start, fact.sample.interaction_type, key))
    assert {(k.resolution, k.dimension, k.start, k.interaction_type, k.group) for k in folded} == (
        expected
    )
    for k, got in folded.items():
        end = k.start + timedelta(seconds=k.resolution)
        within = [
            f
            for f in facts
            if k.start <= f.created_at < end
            and f.sample.interaction_type == k.interaction_type
            and (k.dimension, k.group) in groups_of(f.sample)
        ]
        want = Tally()
        for f in within:
            want.count(f.sample)
        assert got.handle_seconds == pytest.approx(want.handle_seconds)
        assert replace(got, handle_seconds=0.0) == replace(want, handle_seconds=0.0)


@given(moments, moments, st.sampled_from(Dimension))
def test_a_window_is_tiled_by_kept_buckets_from_its_rounded_ends(
    a: datetime, b: datetime, by: Dimension
) -> None:
    since, until = min(a, b), max(a, b)
    kept = Kept.at(NOW)
    start, end, spans = rolled_up_window(since, until, kept, by)
    assert since <= start < since + timedelta(seconds=kept.finest(since, by))
    assert until <= end < until + timedelta(seconds=kept.finest(until, by)) or end == start
    at = start
    for span in spans:
        assert span.start == at < span.end
        assert span.resolution in RESOLUTIONS[by]
        step = timedelta(seconds=span.resolution)
        assert bucket_start(span.start, span.resolution) == span.start
        assert (span.end - span.start) % step == timedelta(0)
        assert kept.finest(span.start, by) <= span.resolution  # only buckets still kept
        at = span.end
    assert at == end
    assert len(spans) <= 7  # seconds, minutes, hours, days, hours, minutes, seconds


def _tiled_a_bucket_at_a_time(start: datetime, end: datetime, by: Dimension) -> list[Span]:
    """The tiling by its definition: from the start, the coarsest bucket that starts there
    and fits, one after another; buckets of one resolution in a row make one span."""
    spans: list[Span] = []
    at = start
    while at < end:
        resolution = next(
            r
            for r in reversed(RESOLUTIONS[by])
            if bucket_start(at, r) == at and at + timedelta(seconds=r) <= end
        )
        after = at + timedelta(seconds=resolution)
        if spans and spans[-1].resolution is resolution:
            spans[-1] = Span(resolution, spans[-1].start, after)
        else:
            spans.append(Span(resolution, at, after))
        at = after
    return spans


@given(moments, moments, st.sampled_from(Dimension))
def test_a_window_is_tiled_a_span_at_a_time_as_a_bucket_at_a_time(
    a: datetime, b: datetime, by: Dimension
) -> None:
    start, end, spans = rolled_up_window(min(a, b), max(a, b), Kept.at(NOW), by)
    assert spans == _tiled_a_bucket_at_a_time(start, end, by)


@given(moments, moments, st.integers(0, 3 * 86_400), st.sampled_from(Dimension))
def test_a_window_ending_after_now_may_end_with_a_bucket_still_filling(
    a: datetime, b: datetime, later: int, by: Dimension
) -> None:
    since, until = min(a, b), max(a, b)
    now = until - timedelta(seconds=later)  # the window ends at or after it: open
    kept = Kept.at(now)
    closed = rolled_up_window(since, until, kept, by)
    start, end, spans = rolled_up_window(since, until, kept, by, now)
    assert (start, end) == closed[:2]  # the window it reports is the same
    at = start
    for span in spans:
        assert span.start == at < span.end
        assert bucket_start(span.start, span.resolution) == span.start
        assert (span.end - span.start) % timedelta(seconds=span.resolution) == timedelta(0)
        assert kept.finest(span.start, by) <= span.resolution
        at = span.end
    assert at >= end  # what lies past the end lies after now, where nothing is yet
    assert spans[:-1] == [] or spans[-2].end < end
    assert _buckets(spans) <= _buckets(closed.spans)
    # A window ending before now is closed: tiled as it always was.
    assert rolled_up_window(since, until, kept, by, end + timedelta(seconds=1)) == closed


def _buckets(spans: list[Span]) -> int:
    return sum((s.end - s.start) // timedelta(seconds=s.resolution) for s in spans)


def test_a_day_ending_now_by_type_is_tiled_by_minutes_hours_and_todays_day() -> None:
    start, end, spans = rolled_up_window(
        NOW - timedelta(days=1), NOW, Kept.at(NOW), Dimension.INTERACTION_TYPE, NOW
    )
    assert (start, end) == (NOW.replace(second=0) + timedelta(minutes=1) - timedelta(days=1), NOW)
    midnight = NOW.replace(hour=0, minute=0, second=0)
    assert spans == [
        Span(R.MINUTE, start, start.replace(minute=0) + timedelta(hours=1)),
        Span(R.HOUR, start.replace(minute=0) + timedelta(hours=1), midnight),
        Span(R.DAY, midnight, midnight + timedelta(days=1)),
    ]


def test_a_recent_day_by_type_is_tiled_by_minutes_hours_minutes_and_seconds() -> None:
    day = rolled_up_window(NOW - timedelta(days=1), NOW, Kept.at(NOW), Dimension.INTERACTION_TYPE)
    start, end, spans = day
    assert (start, end) == (NOW.replace(second=0) + timedelta(minutes=1) - timedelta(days=1), NOW)
    assert [s.resolution for s in spans] == [R.MINUTE, R.HOUR, R.MINUTE, R.SECOND]


def test_by_agent_a_window_goes_by_hours() -> None:
    start, end, spans = rolled_up_window(
        NOW - timedelta(days=1), NOW, Kept.at(NOW), Dimension.AGENT
    )
    hour = NOW.replace(minute=0, second=0) + timedelta(hours=1)
    assert (start, end) == (hour - timedelta(days=1), hour)
    assert [s.resolution for s in spans] == [R.HOUR, R.DAY] or [R.HOUR]


def test_a_window_of_seconds_just_now_is_exact() -> None:
    since = NOW - timedelta(seconds=12.5)
    start, end, spans = rolled_up_window(since, NOW, Kept.at(NOW), Dimension.INTERACTION_TYPE)
    assert (start, end) == (since + timedelta(seconds=0.5), NOW)
    assert spans == [Span(R.SECOND, start, end)]


def test_a_month_long_ago_is_tiled_by_days() -> None:
    since, until = NOW - timedelta(days=80), NOW - timedelta(days=70)
    start, end, spans = rolled_up_window(since, until, Kept.at(NOW), Dimension.SKILL)
    assert [s.resolution for s in spans] == [R.DAY]
    assert (start.hour, end.hour, (end - start).days) == (0, 0, 10)
