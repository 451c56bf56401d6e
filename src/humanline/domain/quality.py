"""Quality per interaction type, agent, skill or risk class: the arithmetic of the report.

Aggregate numbers hid for months that a subset of interaction types was failing (DESIGN.md 1),
so the report splits a window's handoffs into groups and gives each its own: volume,
resolution rate, CSAT (mean, distribution, count), the share answered within target,
time to agent (p50, p90), abandonment and expiry, the offer accept rate and the handle time.
`alerts` flags the groups significantly worse than the pool or than before, and `Standing`
is the per-agent-per-type score that ranks agents of like proficiency.

Pure: the store reads the window's handoffs and offers as `HandoffSample`s and
`OfferSample`s; `report` does the rest.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

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


def report(
    handoffs: Iterable[HandoffSample], offers: Iterable[OfferSample], by: Dimension
) -> list[GroupQuality]:
    """A window's quality, a group per key of `by`, in key order. By agent, a handoff counts
    for the agent that took it (none: in no group) and an offer for the agent offered."""
    grouped: dict[str, list[HandoffSample]] = defaultdict(list)
    for h in handoffs:
        for key in _keys(by, h.interaction_type, h.risk_class, h.skills, h.agent_id):
            grouped[key].append(h)
    answered: dict[str, list[OfferSample]] = defaultdict(list)
    for o in offers:
        for key in _keys(by, o.interaction_type, o.risk_class, o.skills, o.agent_id):
            answered[key].append(o)
    return [
        _group(key, grouped.get(key, []), answered.get(key, []))
        for key in sorted(grouped.keys() | answered.keys())
    ]


def overall(handoffs: Iterable[HandoffSample], offers: Iterable[OfferSample]) -> GroupQuality:
    """The whole window as one group, `all`: what each group is held against."""
    return _group(ALL, list(handoffs), list(offers))


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group(key: str, handoffs: list[HandoffSample], offers: list[OfferSample]) -> GroupQuality:
    total = len(handoffs)
    completed = [h for h in handoffs if h.state is HandoffState.COMPLETED]
    resolved = sum(1 for h in completed if h.outcome is Outcome.RESOLVED)
    ratings = [h.csat for h in handoffs if h.csat is not None]
    waits = [
        (h.assigned_at - h.created_at).total_seconds()
        for h in handoffs
        if h.assigned_at is not None
    ]
    in_target = sum(
        1 for h in handoffs if h.assigned_at is not None and h.assigned_at <= h.deadline
    )
    handled = [h.handle_seconds for h in completed if h.handle_seconds is not None]
    taken = sum(1 for o in offers if o.state in ACCEPTED_OFFERS)
    counted = sum(1 for o in offers if o.state in ACCEPTED_OFFERS | UNTAKEN_OFFERS)
    counts = tuple(ratings.count(level) for level in range(1, 6))
    return GroupQuality(
        key=key,
        handoffs=total,
        completed=len(completed),
        resolved=resolved,
        resolution_rate=_share(resolved, len(completed)),
        csat_count=len(ratings),
        csat_mean=_mean(ratings),
        csat_counts=counts,  # type: ignore[arg-type]
        within_target=_share(in_target, total),
        time_to_agent_p50=percentile(waits, 50),
        time_to_agent_p90=percentile(waits, 90),
        abandoned=_share(sum(h.state is HandoffState.CANCELLED for h in handoffs), total),
        expired=_share(sum(h.state is HandoffState.EXPIRED for h in handoffs), total),
        offers=counted,
        offer_accept_rate=_share(taken, counted),
        handle_time_mean=_mean(handled),
    )


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
