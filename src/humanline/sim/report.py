"""What a simulation run observed, and the summary made of it.

Records are plain data (they cross process boundaries); `summarize` turns them into the
summary: per interaction type and urgency, handoffs, time-to-agent p50/p90/p99, the share
answered within its target, abandonment and expiry, offers declined or missed, how far the
wait estimates were off (median absolute error), the customers' ratings (how many, the mean
CSAT, the share of 4s and 5s); and agent occupancy.
Pure: no I/O, no gRPC.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from humanline.domain.quality import percentile

ALL = "all"


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """One handoff, as the server reported it at the end (times in epoch seconds)."""

    handoff_id: str
    interaction_type: str
    urgency: str
    state: str  # the server's final state: COMPLETED, CANCELLED, ASSIGNED, QUEUED, ...
    created: float
    assigned: float | None = None
    target: float | None = None
    abandoned: bool = False  # the customer's patience ran out (the bot cancelled it)
    estimated: float | None = None  # the wait RequestHandoff estimated, in seconds
    expired: bool = False  # it ended EXPIRED: its maximum wait passed


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """One interaction an agent completed: its type, whether resolved, when (epoch s)."""

    interaction_type: str
    resolved: bool
    at: float


@dataclass(frozen=True, slots=True)
class RatingRecord:
    """One customer's rating the server recorded (RecordFeedback): the interaction's type,
    urgency and whether it was resolved, the rating, when the interaction was completed
    and when the rating was recorded (epoch s)."""

    interaction_type: str
    urgency: str
    resolved: bool
    csat: int
    contacted_again: bool
    completed: float
    at: float


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A quality flag the server raised (or cleared) during the run, as WatchQualityAlerts
    said it; `at` is when the simulator heard it (epoch s)."""

    interaction_type: str
    metric: str
    reference: str
    cleared: bool
    at: float


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One simulated agent's time: logged in, and busy (slot-seconds) while logged in."""

    group: str
    capacity: int
    online_seconds: float
    busy_slot_seconds: float


@dataclass(frozen=True, slots=True)
class PoolSample:
    """The pool at one moment (seconds since the start of the run)."""

    at: float
    queued: int
    available_agents: int
    oldest_wait: float


@dataclass
class Observations:
    """Everything a run observed, merged from every process."""

    handoffs: list[HandoffRecord] = field(default_factory=list)
    agents: list[AgentRecord] = field(default_factory=list)
    # (interaction type, urgency, "accepted" | "declined" | "missed") -> offers
    offers: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    samples: list[PoolSample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # calls that failed, by code
    # handoff id -> when the offer its agent accepted was made (epoch seconds)
    offered: dict[str, float] = field(default_factory=dict)
    taken_by: dict[str, str] = field(default_factory=dict)  # handoff id -> agent group
    outcomes: list[OutcomeRecord] = field(default_factory=list)
    ratings: list[RatingRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    started: float = 0.0  # epoch seconds of the first possible arrival (the samples' zero)

    def merge(self, other: Observations) -> None:
        self.handoffs.extend(other.handoffs)
        self.agents.extend(other.agents)
        self.offers.update(other.offers)
        self.samples.extend(other.samples)
        self.errors.update(other.errors)
        self.offered.update(other.offered)
        self.taken_by.update(other.taken_by)
        self.outcomes.extend(other.outcomes)
        self.ratings.extend(other.ratings)
        self.alerts.extend(other.alerts)
        self.started = self.started or other.started


@dataclass(frozen=True)
class Row:
    """The summary of one interaction type and urgency (or `all` of them)."""

    interaction_type: str
    urgency: str
    handoffs: int
    answered: int  # an agent accepted it
    time_to_agent_mean: float | None
    time_to_agent_p50: float | None
    time_to_agent_p90: float | None
    time_to_agent_p99: float | None
    within_target: float | None  # share of the handoffs answered by their target time
    abandoned: float | None  # share of the handoffs whose customer left first
    expired: float | None  # share of the handoffs that ended at their maximum wait
    # Median of |estimated wait at the request - actual time to agent| over answered handoffs
    # with an estimate, and how many those were.
    estimate_error_p50: float | None
    estimated: int
    unfinished: int  # still waiting when the run ended
    offers_accepted: int
    offers_declined: int
    offers_missed: int
    ratings: int  # customers' ratings recorded
    csat_mean: float | None
    satisfied: float | None  # share of the ratings that were 4 or 5


@dataclass(frozen=True)
class Occupancy:
    """Busy slot-seconds over logged-in slot-seconds, for a group of agents (or `all`)."""

    group: str
    agents: int
    online_seconds: float
    occupancy: float | None


@dataclass(frozen=True)
class Summary:
    """The end-of-run summary; `to_json` gives the same as plain data."""

    scenario: str
    duration: float
    rows: list[Row]
    occupancy: list[Occupancy]
    errors: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "duration_seconds": self.duration,
            "by_type_and_urgency": [asdict(r) for r in self.rows],
            "occupancy": [asdict(o) for o in self.occupancy],
            "errors": self.errors,
        }


def summarize(scenario: str, duration: float, seen: Observations) -> Summary:
    """The summary of a run: a row per interaction type and urgency, one per type over all
    urgencies, and one over everything."""
    groups: dict[tuple[str, str], list[HandoffRecord]] = defaultdict(list)
    for handoff in seen.handoffs:
        for key in (
            (handoff.interaction_type, handoff.urgency),
            (handoff.interaction_type, ALL),
            (ALL, ALL),
        ):
            groups[key].append(handoff)
    ratings: dict[tuple[str, str], list[int]] = defaultdict(list)
    for rating in seen.ratings:
        for key in (
            (rating.interaction_type, rating.urgency),
            (rating.interaction_type, ALL),
            (ALL, ALL),
        ):
            ratings[key].append(rating.csat)
    rows = [
        _row(kind, urgency, groups[(kind, urgency)], seen.offers, ratings[(kind, urgency)])
        for kind, urgency in sorted(groups, key=_row_order)
    ]
    return Summary(scenario, duration, rows, _occupancy(seen.agents), dict(seen.errors))


def _row_order(key: tuple[str, str]) -> tuple[bool, str, bool, int]:
    kind, urgency = key
    order = ("LOW", "NORMAL", "HIGH", "CRITICAL")
    # Each type's total first, then its urgencies; the total over every type last.
    return (kind == ALL, kind, urgency != ALL, order.index(urgency) if urgency in order else 9)


def _row(
    kind: str,
    urgency: str,
    handoffs: list[HandoffRecord],
    offers: Counter[tuple[str, str, str]],
    ratings: list[int],
) -> Row:
    waits = [h.assigned - h.created for h in handoffs if h.assigned is not None]
    in_time = sum(
        1 for h in handoffs if h.assigned is not None and h.target and h.assigned <= h.target
    )
    total = len(handoffs)
    errors = [
        abs(h.estimated - (h.assigned - h.created))
        for h in handoffs
        if h.assigned is not None and h.estimated is not None
    ]

    def offered(result: str) -> int:
        return sum(
            n
            for (t, u, r), n in offers.items()
            if r == result and kind in (ALL, t) and urgency in (ALL, u)
        )

    return Row(
        interaction_type=kind,
        urgency=urgency,
        handoffs=total,
        answered=len(waits),
        time_to_agent_mean=sum(waits) / len(waits) if waits else None,
        time_to_agent_p50=percentile(waits, 50),
        time_to_agent_p90=percentile(waits, 90),
        time_to_agent_p99=percentile(waits, 99),
        within_target=in_time / total if total else None,
        abandoned=sum(h.abandoned for h in handoffs) / total if total else None,
        expired=sum(h.expired for h in handoffs) / total if total else None,
        estimate_error_p50=percentile(errors, 50),
        estimated=len(errors),
        unfinished=sum(1 for h in handoffs if h.state in ("QUEUED", "OFFERED")),
        offers_accepted=offered("accepted"),
        offers_declined=offered("declined"),
        offers_missed=offered("missed"),
        ratings=len(ratings),
        csat_mean=sum(ratings) / len(ratings) if ratings else None,
        satisfied=sum(r >= 4 for r in ratings) / len(ratings) if ratings else None,
    )


def _occupancy(agents: Iterable[AgentRecord]) -> list[Occupancy]:
    by_group: dict[str, list[AgentRecord]] = defaultdict(list)
    for agent in agents:
        by_group[agent.group].append(agent)
        by_group[ALL].append(agent)

    def one(group: str, members: list[AgentRecord]) -> Occupancy:
        online = sum(a.online_seconds for a in members)
        slots = sum(a.online_seconds * a.capacity for a in members)
        busy = sum(a.busy_slot_seconds for a in members)
        return Occupancy(group, len(members), online, busy / slots if slots else None)

    return [one(g, by_group[g]) for g in sorted(by_group, key=lambda g: (g == ALL, g))]


@dataclass(frozen=True)
class Yardstick:
    """What one interaction type should get, the same in both runs of a comparison: its
    target time-to-agent at NORMAL urgency (scaled by each handoff's urgency as
    `urgency_scale` says), its maximum wait, and who is proficient enough for it: the agent
    groups with each of the type's skills at the level the bot asks or the policy's floor,
    whichever is higher."""

    target: float
    max_wait: float
    risk: str
    proficient: frozenset[str] = frozenset()  # agent groups meeting the type's floor


Pair = tuple[float | None, float | None]


@dataclass(frozen=True)
class Compared:
    """One interaction type (or `all`) in two runs of the same scenario: before and after a
    change of routing."""

    interaction_type: str
    risk: str
    handoffs: tuple[int, int]
    offered_in_target: Pair  # the offer its agent took was made within the type's target
    proficient_in_target: Pair  # that, and its agent meets the type's proficiency floor
    time_to_offer_p90: Pair
    time_to_agent_p90: Pair
    over_max_wait: Pair  # no agent by the maximum wait, and the customer had not left
    abandoned: Pair
    expired: Pair


def compare(
    before: Observations,
    after: Observations,
    yardsticks: dict[str, Yardstick],
    urgency_scale: dict[str, float],
) -> list[Compared]:
    """Two runs side by side, per interaction type with a yardstick and over all of them.

    In target means: the offer that the handoff's agent accepted was made by its type's
    target, scaled by its (bot-given) urgency. Time to offer is what routing decides; the
    agent's reaction to the offer comes on top (a simulated agent takes 0.3 to 2 s, at
    human speed, where the scenario's other times are compressed). Proficient in target
    also asks that the agent was of a group the yardstick counts as proficient: fast to
    the wrong agent is the first step wrong."""
    runs = (before, after)
    kinds = sorted({h.interaction_type for run in runs for h in run.handoffs} & set(yardsticks))

    def measure(seen: Observations, kind: str) -> tuple[int, list[float | None]]:
        handoffs = [
            h
            for h in seen.handoffs
            if h.interaction_type in yardsticks and kind in (ALL, h.interaction_type)
        ]
        total = len(handoffs)
        if not total:
            return 0, [None] * 7
        in_target = proficient = over = 0
        to_offer, to_agent = [], []
        for h in handoffs:
            stick = yardsticks[h.interaction_type]
            offered = seen.offered.get(h.handoff_id)
            if offered is not None:
                to_offer.append(offered - h.created)
                timely = offered - h.created <= stick.target * urgency_scale.get(h.urgency, 1)
                in_target += timely
                proficient += timely and seen.taken_by.get(h.handoff_id) in stick.proficient
            waited = None if h.assigned is None else h.assigned - h.created
            if waited is not None:
                to_agent.append(waited)
            if (waited is None and not h.abandoned) or (waited or 0) > stick.max_wait:
                over += 1
        return total, [
            in_target / total,
            proficient / total,
            percentile(to_offer, 90),
            percentile(to_agent, 90),
            over / total,
            sum(h.abandoned for h in handoffs) / total,
            sum(h.expired for h in handoffs) / total,
        ]

    rows = []
    for kind in [*kinds, ALL]:
        (nb, b), (na, a) = measure(before, kind), measure(after, kind)
        rows.append(
            Compared(
                kind,
                yardsticks[kind].risk if kind != ALL else "",
                (nb, na),
                *((b[i], a[i]) for i in range(7)),
            )
        )
    return rows


RESOLUTION = "QUALITY_METRIC_RESOLUTION_RATE"  # the metrics of AlertRecord
CSAT = "QUALITY_METRIC_CSAT_SATISFIED"


@dataclass(frozen=True)
class Drop:
    """A change of a scenario, as `detections` judges it: the interaction type, when (seconds
    into the run), and its resolution rate and expected CSAT score (the share of ratings of
    4 or 5) before and after."""

    interaction_type: str
    at: float
    resolve_before: float
    resolve_after: float
    satisfied_before: float
    satisfied_after: float


@dataclass(frozen=True)
class Detection:
    """How soon the server flagged an interaction type whose resolution rate or CSAT the
    scenario changed: the change, the first flag after it (of either metric, and which), the
    first of each metric, and the completions and the ratings of the type between the
    change and the first flag (None: never flagged)."""

    interaction_type: str
    changed_at: float  # seconds into the run
    resolve_before: float
    resolve_after: float
    satisfied_before: float  # the expected share of ratings of 4 or 5
    satisfied_after: float
    flagged_after: float | None  # seconds after the change, the first flag of either metric
    metric: str | None  # that flag's: RESOLUTION or CSAT
    completions_until_flag: int | None  # of the type, after the change, before the flag
    completions_after_change: int
    ratings_until_flag: int | None  # of the type's interactions completed after the change
    ratings_after_change: int
    resolution_flagged_after: float | None  # seconds after the change, the first of each
    csat_flagged_after: float | None


def detections(seen: Observations, drops: list[Drop]) -> tuple[list[Detection], list[AlertRecord]]:
    """For each change: when the server first flagged the type afterwards, for its
    resolution rate or its CSAT; and every flag raised for a type no change touched (false
    alarms)."""
    found = []
    for drop in drops:
        kind, moment = drop.interaction_type, seen.started + drop.at
        flags = sorted(
            (
                a
                for a in seen.alerts
                if a.interaction_type == kind and not a.cleared and a.at >= moment
            ),
            key=lambda a: a.at,
        )
        done = [o.at for o in seen.outcomes if o.interaction_type == kind and o.at >= moment]
        rated = [r.at for r in seen.ratings if r.interaction_type == kind and r.completed >= moment]
        first = flags[0] if flags else None
        firsts = {metric: _first(flags, metric, moment) for metric in (RESOLUTION, CSAT)}
        found.append(
            Detection(
                interaction_type=kind,
                changed_at=drop.at,
                resolve_before=drop.resolve_before,
                resolve_after=drop.resolve_after,
                satisfied_before=drop.satisfied_before,
                satisfied_after=drop.satisfied_after,
                flagged_after=None if first is None else first.at - moment,
                metric=None if first is None else first.metric,
                completions_until_flag=(
                    None if first is None else sum(1 for t in done if t < first.at)
                ),
                completions_after_change=len(done),
                ratings_until_flag=None if first is None else sum(1 for t in rated if t < first.at),
                ratings_after_change=len(rated),
                resolution_flagged_after=firsts[RESOLUTION],
                csat_flagged_after=firsts[CSAT],
            )
        )
    touched = {drop.interaction_type for drop in drops}
    false = [a for a in seen.alerts if not a.cleared and a.interaction_type not in touched]
    return found, false


def _first(flags: list[AlertRecord], metric: str, moment: float) -> float | None:
    """Seconds from `moment` to the first of `flags` (in time order) for `metric`."""
    at = next((a.at for a in flags if a.metric == metric), None)
    return None if at is None else at - moment
