"""Quality per interaction type, agent, skill or risk class: the arithmetic of the report.

Aggregate numbers hid for months that a subset of interaction types was failing,
so the report splits a window's handoffs into groups and gives each its own: volume,
resolution rate, CSAT (mean, distribution, count), the share answered within target,
time to agent (p50, p90), abandonment and expiry, the offer accept rate and the handle time.
`alerts` flags the groups significantly worse than the pool or than before, and `Standing`
is the per-agent-per-type score that ranks agents of like proficiency.

Pure. A group's numbers are sums (`Tally`), so the store keeps them per bucket of time
(`Resolution`, `BucketKey`): what each final handoff, answered offer and late rating adds is
`fold`ed into its buckets, and a report adds up the buckets that tile its window
(`rolled_up_window`) with what is not folded yet. Time to agent is kept in log-scale bins,
its percentiles within `WAIT_ACCURACY`; everything else is exact.
"""

from __future__ import annotations

import enum
import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from ddsketch.mapping import LogarithmicMapping

from humanline.domain.model import HandoffState, OfferState, Outcome, RiskClass

ALL = "all"  # the key of the whole window
NO_SKILL = "(none)"  # the skill group of handoffs that required none
UNKNOWN_RISK = "(unknown)"  # the risk group of handoffs made before risk classes were kept


class Dimension(enum.Enum):
    """What a report groups by."""

    INTERACTION_TYPE = "INTERACTION_TYPE"
    AGENT = "AGENT"  # the agent that took the handoff; offers by the agent offered
    SKILL = "SKILL"  # each required skill (a handoff counts in each of its skills' groups)
    RISK_CLASS = "RISK_CLASS"


@dataclass(frozen=True, slots=True)
class HandoffSample:
    """One handoff of the window, as the report needs it."""

    interaction_type: str
    risk_class: RiskClass | None
    skills: tuple[str, ...]
    agent_id: str | None  # who took it, once accepted
    state: HandoffState
    created_at: datetime
    deadline: datetime  # its target time-to-agent
    assigned_at: datetime | None
    outcome: Outcome | None
    handle_seconds: float | None
    csat: int | None


@dataclass(frozen=True, slots=True)
class OfferSample:
    """One answered offer of a handoff of the window: its agent and how it ended."""

    interaction_type: str
    risk_class: RiskClass | None
    skills: tuple[str, ...]
    agent_id: str
    state: OfferState  # ACCEPTED, COMPLETED or REVOKED (accepted), DECLINED, EXPIRED (missed)


ACCEPTED_OFFERS = frozenset({OfferState.ACCEPTED, OfferState.COMPLETED, OfferState.REVOKED})
UNTAKEN_OFFERS = frozenset({OfferState.DECLINED, OfferState.EXPIRED})


@dataclass(frozen=True, slots=True)
class GroupQuality:
    """The quality of one group of a window (shares and means None where nothing counts)."""

    key: str
    handoffs: int
    completed: int
    resolved: int
    resolution_rate: float | None  # resolved / completed
    csat_count: int
    csat_mean: float | None
    csat_counts: tuple[int, int, int, int, int]  # how many rated 1, 2, 3, 4 and 5
    within_target: float | None  # accepted by its target time / handoffs
    time_to_agent_p50: float | None  # seconds, over the handoffs accepted
    time_to_agent_p90: float | None
    abandoned: float | None  # cancelled (the customer left) / handoffs
    expired: float | None  # ended at the maximum wait / handoffs
    offers: int  # answered offers (accepted, declined or missed)
    offer_accept_rate: float | None
    handle_time_mean: float | None  # seconds, over the completed

    @property
    def satisfied(self) -> float | None:
        """The CSAT score: the share of ratings of 4 or 5."""
        if not self.csat_count:
            return None
        return (self.csat_counts[3] + self.csat_counts[4]) / self.csat_count


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between ranks; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _keys(
    by: Dimension,
    interaction_type: str,
    risk_class: RiskClass | None,
    skills: tuple[str, ...],
    agent_id: str | None,
) -> tuple[str, ...]:
    match by:
        case Dimension.INTERACTION_TYPE:
            return (interaction_type,)
        case Dimension.RISK_CLASS:
            return (UNKNOWN_RISK if risk_class is None else risk_class.name,)
        case Dimension.SKILL:
            return skills or (NO_SKILL,)
        case Dimension.AGENT:
            return () if agent_id is None else (agent_id,)


@dataclass(frozen=True, slots=True)
class RatingSample:
    """A customer's rating that came after its handoff was final: it adds a rating to the
    handoff's groups (by agent, the taker's), and nothing else."""

    interaction_type: str
    risk_class: RiskClass | None
    skills: tuple[str, ...]
    agent_id: str | None
    csat: int


Sample = HandoffSample | OfferSample | RatingSample


# --- the sums a report is made of --------------------------------------------------------------

WAIT_ACCURACY = 0.01  # a time-to-agent percentile is within 1% of the exact one
_WAIT_BINS = LogarithmicMapping(WAIT_ACCURACY)
ZERO_WAIT = -(2**31)  # the bin of waits under MIN_WAIT (and of negative ones: clock skew)
MIN_WAIT = 1e-6  # seconds


def wait_bin(seconds: float) -> int:
    """The log-scale bin of a wait: bins are 2% wide, and each stands for a value within 1%
    of every wait in it (DDSketch's logarithmic mapping)."""
    return ZERO_WAIT if seconds < MIN_WAIT else int(_WAIT_BINS.key(seconds))


def _bin_value(key: int) -> float:
    return 0.0 if key == ZERO_WAIT else float(_WAIT_BINS.value(key))


def binned_percentile(bins: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (0-100) of binned waits, interpolated between ranks as
    `percentile` does: each rank's value is its bin's, within WAIT_ACCURACY of the exact
    one, and so is the interpolation. None for none."""
    total = sum(bins.values())
    if not total:
        return None
    rank = (total - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    values: dict[int, float] = {}
    seen = 0
    for key in sorted(bins):
        count = bins[key]
        for wanted in (low, high):
            if wanted not in values and seen <= wanted < seen + count:
                values[wanted] = _bin_value(key)
        seen += count
        if high in values:
            break
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(slots=True)
class Tally:
    """What a group's quality is made of, as sums: the tallies of two spans of time add up to
    the tally of both, so the store keeps one per group and bucket of time, and a report adds
    up buckets. Time to agent alone is kept approximately, as counts per log-scale bin."""

    handoffs: int = 0
    completed: int = 0
    resolved: int = 0
    csat: list[int] = field(default_factory=lambda: [0] * 5)  # how many rated 1, 2, 3, 4, 5
    within_target: int = 0
    cancelled: int = 0
    expired: int = 0
    offers: int = 0  # answered: accepted, declined or missed
    offers_taken: int = 0
    handled: int = 0  # completions with a handle time
    handle_seconds: float = 0.0  # their sum
    waits: Counter[int] = field(default_factory=Counter)  # times to agent, per `wait_bin`

    def add(self, other: Tally) -> None:
        self.handoffs += other.handoffs
        self.completed += other.completed
        self.resolved += other.resolved
        for level, count in enumerate(other.csat):
            self.csat[level] += count
        self.within_target += other.within_target
        self.cancelled += other.cancelled
        self.expired += other.expired
        self.offers += other.offers
        self.offers_taken += other.offers_taken
        self.handled += other.handled
        self.handle_seconds += other.handle_seconds
        for key, count in other.waits.items():
            self.waits[key] += count

    def count_handoff(self, h: HandoffSample) -> None:
        self.handoffs += 1
        if h.state is HandoffState.COMPLETED:
            self.completed += 1
            self.resolved += h.outcome is Outcome.RESOLVED
            if h.handle_seconds is not None:
                self.handled += 1
                self.handle_seconds += h.handle_seconds
        elif h.state is HandoffState.CANCELLED:
            self.cancelled += 1
        elif h.state is HandoffState.EXPIRED:
            self.expired += 1
        if h.csat is not None:
            self.count_rating(h.csat)
        if h.assigned_at is not None:
            self.waits[wait_bin((h.assigned_at - h.created_at).total_seconds())] += 1
            self.within_target += h.assigned_at <= h.deadline

    def count_offer(self, o: OfferSample) -> None:
        if o.state in ACCEPTED_OFFERS or o.state in UNTAKEN_OFFERS:
            self.offers += 1
            self.offers_taken += o.state in ACCEPTED_OFFERS

    def count_rating(self, csat: int) -> None:
        self.csat[csat - 1] += 1

    def count(self, sample: Sample) -> None:
        match sample:
            case HandoffSample():
                self.count_handoff(sample)
            case OfferSample():
                self.count_offer(sample)
            case RatingSample(csat=csat):
                self.count_rating(csat)

    def quality(self, key: str) -> GroupQuality:
        total, rated = self.handoffs, sum(self.csat)
        return GroupQuality(
            key=key,
            handoffs=total,
            completed=self.completed,
            resolved=self.resolved,
            resolution_rate=_share(self.resolved, self.completed),
            csat_count=rated,
            csat_mean=(
                sum(level * n for level, n in enumerate(self.csat, 1)) / rated if rated else None
            ),
            csat_counts=tuple(self.csat),  # type: ignore[arg-type]
            within_target=_share(self.within_target, total),
            time_to_agent_p50=binned_percentile(self.waits, 50),
            time_to_agent_p90=binned_percentile(self.waits, 90),
            abandoned=_share(self.cancelled, total),
            expired=_share(self.expired, total),
            offers=self.offers,
            offer_accept_rate=_share(self.offers_taken, self.offers),
            handle_time_mean=self.handle_seconds / self.handled if self.handled else None,
        )


@dataclass(slots=True)
class Tallies:
    """A window's tallies: one per group of a dimension, and the whole window's."""

    groups: dict[str, Tally] = field(default_factory=dict)
    whole: Tally = field(default_factory=Tally)

    def group(self, key: str) -> Tally:
        found = self.groups.get(key)
        if found is None:
            found = self.groups[key] = Tally()
        return found

    def report(self) -> list[GroupQuality]:
        """A group per key, in key order."""
        return [self.groups[key].quality(key) for key in sorted(self.groups)]

    def overall(self) -> GroupQuality:
        """The whole window as one group, `all`: what each group is held against."""
        return self.whole.quality(ALL)


def tally(
    by: Dimension,
    handoffs: Iterable[HandoffSample] = (),
    offers: Iterable[OfferSample] = (),
    ratings: Iterable[RatingSample] = (),
    into: Tallies | None = None,
) -> Tallies:
    """Counts samples into per-group tallies of `by` (and the whole window's). By agent, a
    handoff counts for the agent that took it (none: in no group), an offer for the agent
    offered and a rating for the agent rated."""
    into = into if into is not None else Tallies()
    for h in handoffs:
        into.whole.count_handoff(h)
        for key in _keys(by, h.interaction_type, h.risk_class, h.skills, h.agent_id):
            into.group(key).count_handoff(h)
    for o in offers:
        into.whole.count_offer(o)
        for key in _keys(by, o.interaction_type, o.risk_class, o.skills, o.agent_id):
            into.group(key).count_offer(o)
    for r in ratings:
        into.whole.count_rating(r.csat)
        for key in _keys(by, r.interaction_type, r.risk_class, r.skills, r.agent_id):
            into.group(key).count_rating(r.csat)
    return into


def groups_of(sample: Sample) -> list[tuple[Dimension, str]]:
    """Every group, of every dimension, `sample` counts in."""
    return [
        (by, key)
        for by in Dimension
        for key in _keys(
            by, sample.interaction_type, sample.risk_class, sample.skills, sample.agent_id
        )
    ]


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


# --- buckets of time ---------------------------------------------------------------------------


class Resolution(enum.IntEnum):
    """The length of the buckets the store keeps tallies for, in seconds."""

    SECOND = 1
    MINUTE = 60
    HOUR = 3600
    DAY = 86400


def bucket_start(at: datetime, resolution: Resolution) -> datetime:
    """The start of the bucket of `resolution` holding `at` (aligned to the epoch, in UTC)."""
    seconds = math.floor(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % resolution, UTC)


def _boundary_at_or_after(at: datetime, resolution: Resolution) -> datetime:
    start = bucket_start(at, resolution)
    return start if start == at else start + timedelta(seconds=resolution)


# The buckets kept per dimension: by type, down to the second (the early warnings' windows may
# be short); by risk class and skill, the minute; by agent, the hour (an agent's groups are
# many, and their minutes would outnumber all the rest).
RESOLUTIONS: dict[Dimension, tuple[Resolution, ...]] = {
    Dimension.INTERACTION_TYPE: (
        Resolution.SECOND,
        Resolution.MINUTE,
        Resolution.HOUR,
        Resolution.DAY,
    ),
    Dimension.RISK_CLASS: (Resolution.MINUTE, Resolution.HOUR, Resolution.DAY),
    Dimension.SKILL: (Resolution.MINUTE, Resolution.HOUR, Resolution.DAY),
    Dimension.AGENT: (Resolution.HOUR, Resolution.DAY),
}

# How long the store keeps buckets finer than a day (days are kept as long as the rollups,
# HUMANLINE_ROLLUP_RETENTION_DAYS): seconds for short early-warning windows (minutes long,
# for tests and demos); minutes for the early warnings' two windows and a day's report,
# with room to spare; hours for a month's and a bit.
SECONDS_KEPT = timedelta(hours=1)
MINUTES_KEPT = timedelta(days=3)
HOURS_KEPT = timedelta(days=62)


@dataclass(frozen=True, slots=True)
class Kept:
    """From when the store keeps buckets of each resolution (older ones are pruned): seconds
    from a minute's start, minutes from an hour's, hours from a day's, so that the finer
    buckets that tile a window's ends are all kept."""

    seconds_from: datetime
    minutes_from: datetime
    hours_from: datetime

    @classmethod
    def at(cls, now: datetime) -> Kept:
        """What is kept at `now`."""
        return cls(
            _boundary_at_or_after(now - SECONDS_KEPT, Resolution.MINUTE),
            _boundary_at_or_after(now - MINUTES_KEPT, Resolution.HOUR),
            _boundary_at_or_after(now - HOURS_KEPT, Resolution.DAY),
        )

    def finest(self, at: datetime, by: Dimension) -> Resolution:
        """The finest resolution kept at `at` for `by`."""
        kept_from = {
            Resolution.SECOND: self.seconds_from,
            Resolution.MINUTE: self.minutes_from,
            Resolution.HOUR: self.hours_from,
        }
        for resolution in RESOLUTIONS[by]:
            if resolution is Resolution.DAY or at >= kept_from[resolution]:
                return resolution
        raise AssertionError(f"no resolution for {by}")  # every dimension has days


@dataclass(frozen=True, slots=True)
class BucketKey:
    """Which tally of the store: a group of a dimension, of one interaction type, over one
    bucket of time."""

    resolution: Resolution
    dimension: Dimension
    start: datetime
    interaction_type: str
    group: str


@dataclass(frozen=True, slots=True)
class Fact:
    """What one handoff (or its offer, or its late rating) adds, and when the handoff was
    created: the store keeps it until it is folded into the buckets."""

    id: int
    created_at: datetime
    sample: Sample


# Each dimension's resolutions, finest first.
_CHAINS = tuple(tuple((by, r) for r in RESOLUTIONS[by]) for by in Dimension)


@functools.lru_cache(maxsize=4096)
def _instant(epoch_second: int) -> datetime:
    return datetime.fromtimestamp(epoch_second, UTC)


def fold(facts: Iterable[Fact]) -> dict[BucketKey, Tally]:
    """The tallies `facts` add to each bucket they fall in: every group of every dimension,
    at each resolution kept for it (`RESOLUTIONS`).

    Each fact is added to its groups' buckets of the finest resolution only, and each coarser
    bucket is then the sum of the finer ones within it: a batch's buckets are far fewer than
    its facts, and a rollup adds up thousands of facts at a time."""
    finest: dict[tuple[str, int, str, str], Tally] = {}  # (dimension, start, type, group)
    for fact in facts:
        one = Tally()
        one.count(fact.sample)
        second = math.floor(fact.created_at.timestamp())
        kind = fact.sample.interaction_type
        for by, key in groups_of(fact.sample):
            resolution = RESOLUTIONS[by][0]
            at = (by.value, second - second % resolution, kind, key)
            found = finest.get(at)
            if found is None:
                finest[at] = found = Tally()
            found.add(one)
    sums: dict[BucketKey, Tally] = {}
    for resolutions in _CHAINS:
        # Each level of a dimension's buckets, from the finest: added into the next.
        level = {at: t for at, t in finest.items() if at[0] == resolutions[0][0].value}
        for i, (by, resolution) in enumerate(resolutions):
            for (_, start, kind, key), t in level.items():
                sums[BucketKey(resolution, by, _instant(start), kind, key)] = t
            if i + 1 == len(resolutions):
                break
            coarser: dict[tuple[str, int, str, str], Tally] = {}
            size = resolutions[i + 1][1]
            for (name, start, kind, key), t in level.items():
                at = (name, start - start % size, kind, key)
                found = coarser.get(at)
                if found is None:
                    coarser[at] = found = Tally()
                found.add(t)
            level = coarser
    return sums


@dataclass(frozen=True, slots=True)
class Span:
    """The buckets of one resolution that start in [start, end)."""

    resolution: Resolution
    start: datetime
    end: datetime


class Window(NamedTuple):
    """A window buckets can give, [start, end), and the spans of buckets that tile it."""

    start: datetime
    end: datetime
    spans: list[Span]


def rolled_up_window(
    since: datetime, until: datetime, kept: Kept, by: Dimension, now: datetime | None = None
) -> Window:
    """The window buckets of `by` can give for [since, until), and the fewest spans of buckets
    that tile it: each end moves up to the next boundary of the finest resolution kept there
    for `by` (by type, a second, for recent times: a window ending now takes in all so far),
    and the window is covered with days within, then hours, minutes and seconds toward its
    ends.

    Nothing is created after `now` (the reader's clock): a window that ends at or after it
    is open, and its last bucket may run past its end, so that a day ending now is read from
    today's day bucket rather than from its hours, minutes and seconds."""
    start = _boundary_at_or_after(since, kept.finest(since, by))
    end = max(start, _boundary_at_or_after(until, kept.finest(until, by)))
    is_open = now is not None and end >= now
    spans: list[Span] = []
    resolutions = RESOLUTIONS[by]  # finest first; each one's boundaries are the finer ones'
    at = start
    while at < end:
        # The coarsest bucket that starts here and fits (or, the window being open, that
        # starts here), and as many more of it as fit before the next coarser one would (a
        # span at a time, not a bucket at a time).
        for i in reversed(range(len(resolutions))):
            resolution = resolutions[i]
            step = timedelta(seconds=resolution)
            if bucket_start(at, resolution) == at and (at + step <= end or is_open):
                break
        else:  # both ends are on boundaries of the finest resolution of `by`
            raise AssertionError(f"{at} is not on a bucket boundary")
        if at + step > end:  # the open window's last bucket, reaching past its end
            spans.append(Span(resolution, at, at + step))
            break
        stop = at + step * ((end - at) // step)
        if i + 1 < len(resolutions):
            coarser = resolutions[i + 1]
            boundary = _boundary_at_or_after(at, coarser)
            if boundary + timedelta(seconds=coarser) <= end or (is_open and boundary < end):
                stop = min(stop, boundary)
        spans.append(Span(resolution, at, stop))
        at = stop
    return Window(start, end, spans)


# --- the retraining export ---------------------------------------------------------------------

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OutcomeQuery:
    """Which completed handoffs an export takes: completed in [since, until), of one type or
    any, with one of `outcomes` (empty: any), only failures (not resolved, rated 1 or 2, or
    contacted again), rated at most `max_csat` (None: any, rated or not)."""

    since: datetime = EARLIEST
    until: datetime = LATEST
    interaction_type: str | None = None
    outcomes: frozenset[Outcome] = frozenset()
    only_failures: bool = False
    max_csat: int | None = None


# --- early warning ---------------------------------------------------------------------------

MIN_SAMPLES = 30  # a group with fewer completions (or ratings) is never flagged
ALPHA = 0.001  # one-sided: a group flagged where chance alone would do it once in a thousand
TEST = (
    "two-proportion z-test with continuity correction, one-sided, p < 0.001, "
    "at least 30 samples each side"
)


class Metric(enum.Enum):
    """A share the early warning watches."""

    RESOLUTION_RATE = "RESOLUTION_RATE"  # resolved over completed
    CSAT_SATISFIED = "CSAT_SATISFIED"  # ratings of 4 or 5 over ratings


class Reference(enum.Enum):
    """What a group is held against."""

    POOL = "POOL"  # the rest of the window: every other group together
    BASELINE = "BASELINE"  # the same group in the window before


@dataclass(frozen=True, slots=True)
class Proportion:
    """Successes out of trials, with its Wilson score interval at 95%."""

    successes: int
    trials: int

    @property
    def share(self) -> float:
        return self.successes / self.trials if self.trials else 0.0

    def wilson(self, z: float = 1.959964) -> tuple[float, float]:
        """The Wilson score interval: unlike the normal one it stays within 0..1 and is
        honest for small samples and shares near 0 or 1."""
        n, p = self.trials, self.share
        if not n:
            return (0.0, 1.0)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class Alert:
    """A group significantly worse than its reference on one metric."""

    key: str
    metric: Metric
    reference: Reference
    observed: Proportion
    expected: Proportion  # the reference's
    z: float
    p_value: float
    test: str = TEST

    @property
    def gap(self) -> float:
        """How far below its reference the group is (a share, positive)."""
        return self.expected.share - self.observed.share


def z_test(group: Proportion, reference: Proportion) -> tuple[float, float]:
    """The two-proportion z statistic of `group` below `reference` (pooled standard error,
    Yates's continuity correction) and its one-sided p-value: the chance of a group this
    far below by luck. The correction keeps the false alarms near their nominal rate for
    shares near 1, where the normal approximation alone flags a third too often."""
    n1, n2 = group.trials, reference.trials
    pooled = (group.successes + reference.successes) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 0.0, 1.0
    below = min(0.0, group.share - reference.share + 0.5 * (1 / n1 + 1 / n2))
    z = below / spread
    return z, 0.5 * math.erfc(-z / math.sqrt(2))


def _proportion(group: GroupQuality, metric: Metric) -> Proportion:
    if metric is Metric.RESOLUTION_RATE:
        return Proportion(group.resolved, group.completed)
    return Proportion(group.csat_counts[3] + group.csat_counts[4], group.csat_count)


def _flag(
    key: str, metric: Metric, reference: Reference, observed: Proportion, expected: Proportion
) -> Alert | None:
    if observed.trials < MIN_SAMPLES or expected.trials < MIN_SAMPLES:
        return None
    z, p_value = z_test(observed, expected)
    if p_value >= ALPHA:
        return None
    return Alert(key, metric, reference, observed, expected, z, p_value)


def alerts(
    groups: Iterable[GroupQuality],
    whole: GroupQuality,
    baseline: Iterable[GroupQuality] = (),
) -> list[Alert]:
    """The groups of a window significantly below the rest of the pool, or below their own
    baseline (the same groups in an earlier window), in resolution rate or CSAT. A group
    with fewer than `MIN_SAMPLES` on either side is never flagged."""
    before = {g.key: g for g in baseline}
    found: list[Alert] = []
    for group in groups:
        for metric in Metric:
            mine = _proportion(group, metric)
            pool = _proportion(whole, metric)
            rest = Proportion(pool.successes - mine.successes, pool.trials - mine.trials)
            flags = [_flag(group.key, metric, Reference.POOL, mine, rest)]
            if group.key in before:
                then = _proportion(before[group.key], metric)
                flags.append(_flag(group.key, metric, Reference.BASELINE, mine, then))
            found.extend(f for f in flags if f is not None)
    return found


# --- quality-aware ranking ---------------------------------------------------------------------

MEMORY = 100  # each outcome weighs an agent's earlier ones down by 1 - 1/MEMORY
FORGET = 1 - 1 / MEMORY  # so about the last hundred count: an agent who improves is seen to
PRIOR_WEIGHT = 10.0  # the pool's rate counts as this many outcomes in every agent's score
SCORE_BANDS = 20  # scores rank in steps of 0.05: agents within a step take turns by idle time
NEUTRAL = 0.5  # the rate of a type the pool has no record of yet


def is_satisfied(csat: int) -> bool:
    """A rating of 4 or 5: the CSAT score's (and the early warning's) satisfied customer."""
    return csat >= 4


@dataclass(frozen=True, slots=True)
class Track:
    """Recent outcomes on one interaction type, each weighing `FORGET` less for every later
    one of its kind: completions and how many were resolved, ratings and how many were
    satisfied. An agent's own, or the pool's (the sum over its agents)."""

    completed: float = 0.0
    resolved: float = 0.0
    rated: float = 0.0
    satisfied: float = 0.0

    def completion(self, resolved: bool) -> Track:
        """The track after one more completion (the store's upsert does the same sums)."""
        return Track(
            self.completed * FORGET + 1,
            self.resolved * FORGET + (1 if resolved else 0),
            self.rated,
            self.satisfied,
        )

    def rating(self, csat: int) -> Track:
        """The track after one more rating."""
        return Track(
            self.completed,
            self.resolved,
            self.rated * FORGET + 1,
            self.satisfied * FORGET + (1 if is_satisfied(csat) else 0),
        )

    @property
    def resolution(self) -> float:
        """The share resolved; `NEUTRAL` before any completion."""
        return self.resolved / self.completed if self.completed > 0 else NEUTRAL

    @property
    def satisfaction(self) -> float:
        """The share of ratings satisfied; `NEUTRAL` before any rating."""
        return self.satisfied / self.rated if self.rated > 0 else NEUTRAL


@dataclass(frozen=True, slots=True)
class Standing:
    """An agent's quality on one interaction type, as ranking uses it.

    Its resolution rate and satisfied share, each shrunk toward the pool's as if the agent
    had `PRIOR_WEIGHT` more outcomes at the pool's rates (the posterior mean of a Beta prior
    centred on the pool), so that a new agent scores exactly the pool's rates, neutral, and
    a few lucky or unlucky handoffs move a score little; the score is their mean. Agents
    rank by `band`, the score in steps of 1/`SCORE_BANDS`, so that agents of like quality
    still share the work by idle time. The store computes the same band in SQL, in the same
    order of floating-point operations, and tests hold it to this.
    """

    own: Track
    pool: Track

    @property
    def resolution(self) -> float:
        own = self.own
        return (own.resolved + PRIOR_WEIGHT * self.pool.resolution) / (own.completed + PRIOR_WEIGHT)

    @property
    def satisfaction(self) -> float:
        own = self.own
        return (own.satisfied + PRIOR_WEIGHT * self.pool.satisfaction) / (own.rated + PRIOR_WEIGHT)

    @property
    def score(self) -> float:
        return (self.resolution + self.satisfaction) / 2

    @property
    def band(self) -> int:
        return math.floor(self.score * SCORE_BANDS)

    def explain(self) -> str:
        """The score and what it comes from, for the offer's routing reasons."""
        own, pool = self.own, self.pool
        prior = f"the pool's {pool.resolution:.0%} resolved, {pool.satisfaction:.0%} satisfied"
        if own.completed < 0.5 and own.rated < 0.5:
            return f"quality {self.score:.2f}: new to the type, so {prior}"
        # The counts are weighted (older outcomes count less): not the agent's totals.
        parts = [f"{own.resolution:.0%} resolved of {own.completed:.0f} weighted completions"]
        if own.rated >= 0.5:
            parts.append(f"{own.satisfaction:.0%} satisfied of {own.rated:.0f} weighted ratings")
        return f"quality {self.score:.2f}: {' and '.join(parts)}, shrunk toward {prior}"
