"""The matching core (humanline.domain.matching): eligibility, queue order, agent choice and
the whole-snapshot plan.

Example tests pin each rule of the module docstring; property tests hold the functions to a
brute-force reference written here independently (explicit loops and pairwise comparisons
instead of sort keys) and check what greedy-in-queue-order guarantees: capacity, uniqueness,
eligibility, exclusions, maximality, no overtaking, and the best free agent at each turn.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from humanline.domain.clock import FakeClock
from humanline.domain.matching import (
    agent_rank_key,
    choose_agent,
    choose_handoff,
    has_skills,
    is_eligible,
    plan_matches,
    proficiency_score,
    queue_key,
)
from humanline.domain.model import (
    Agent,
    AgentOrder,
    AgentState,
    AgentStatus,
    Handoff,
    HandoffState,
    Urgency,
)
from humanline.domain.rules import DispatchPolicy
from tests.unit.builders import T0, agent, at, handoff

MAIN = settings(max_examples=1000, deadline=None)
HEAVY = settings(max_examples=2000, deadline=None)

# --- example tests: eligibility --------------------------------------------------------------


def test_available_qualified_agent_is_eligible() -> None:
    a = agent(skills={"billing": 3}, languages=["en"])
    h = handoff(skills={"billing": 3}, language="en")
    assert is_eligible(a, h)


@pytest.mark.parametrize(
    ("status", "connected", "load", "capacity", "expected_state"),
    [
        (AgentStatus.OFFLINE, False, 0, 1, AgentState.OFFLINE),
        (AgentStatus.AVAILABLE, False, 0, 1, AgentState.RECONNECTING),
        (AgentStatus.AWAY, True, 0, 1, AgentState.AWAY),
        (AgentStatus.AVAILABLE, True, 1, 1, AgentState.BUSY),
        (AgentStatus.AVAILABLE, True, 3, 2, AgentState.BUSY),
    ],
)
def test_agent_not_available_is_not_eligible(
    status: AgentStatus, connected: bool, load: int, capacity: int, expected_state: AgentState
) -> None:
    a = agent(status=status, connected=connected, load=load, capacity=capacity)
    assert a.state is expected_state
    assert not is_eligible(a, handoff())


def test_agent_with_room_left_is_eligible_while_holding_work() -> None:
    assert is_eligible(agent(capacity=3, load=2), handoff())


@pytest.mark.parametrize(
    "state",
    [HandoffState.OFFERED, HandoffState.ASSIGNED, HandoffState.COMPLETED, HandoffState.CANCELLED],
)
def test_only_queued_handoffs_can_be_matched(state: HandoffState) -> None:
    assert is_eligible(agent(), handoff(state=HandoffState.QUEUED))
    assert not is_eligible(agent(), handoff(state=state))


def test_excluded_agent_is_not_eligible() -> None:
    a = agent("agent-1")
    assert not is_eligible(a, handoff(), excluded={"agent-1"})
    assert is_eligible(a, handoff(), excluded={"agent-2"})


def test_skill_exactly_at_minimum_is_enough() -> None:
    assert has_skills(agent(skills={"billing": 3}), handoff(skills={"billing": 3}))


def test_skill_below_minimum_is_not_enough() -> None:
    a = agent(skills={"billing": 2})
    h = handoff(skills={"billing": 3})
    assert not has_skills(a, h)
    assert not is_eligible(a, h)


def test_missing_skill_is_not_enough() -> None:
    a = agent(skills={"billing": 5})
    h = handoff(skills={"billing": 1, "fraud": 1})
    assert not has_skills(a, h)
    assert not is_eligible(a, h)


def test_every_required_skill_must_be_met() -> None:
    h = handoff(skills={"billing": 2, "fraud": 4})
    assert has_skills(agent(skills={"billing": 2, "fraud": 4, "tech": 1}), h)
    assert not has_skills(agent(skills={"billing": 5, "fraud": 3}), h)
    assert not has_skills(agent(skills={"billing": 1, "fraud": 5}), h)


def test_no_required_skills_means_any_agent_qualifies() -> None:
    assert has_skills(agent(skills={}), handoff(skills={}))


def test_named_language_is_required() -> None:
    h = handoff(language="de")
    assert not has_skills(agent(languages=["en"]), h)
    assert not is_eligible(agent(languages=["en"]), h)
    assert has_skills(agent(languages=["en", "de"]), h)


def test_language_is_matched_exactly() -> None:
    # "de" and "de-ch" are different tags: the handoff names what it needs.
    assert not has_skills(agent(languages=["de-ch"]), handoff(language="de"))
    assert not has_skills(agent(languages=["de"]), handoff(language="de-ch"))


def test_no_language_means_any_language() -> None:
    assert has_skills(agent(languages=[]), handoff(language=None))
    assert has_skills(agent(languages=["fr"]), handoff(language=None))


# --- example tests: queue order ---------------------------------------------------------------


def test_queue_key_is_deadline_then_created_then_id() -> None:
    h = handoff("h1", created_at=at(5), deadline=at(60))
    assert queue_key(h) == (at(60), at(5), "h1")


def test_urgent_handoff_goes_ahead_of_older_normal_one() -> None:
    clock = FakeClock()
    policy = DispatchPolicy()
    normal = handoff("h-normal", created_at=clock.now(), urgency=Urgency.NORMAL)
    clock.advance(10)
    critical = handoff("h-critical", created_at=clock.now(), urgency=Urgency.CRITICAL)
    assert critical.deadline == clock.now() + policy.targets[Urgency.CRITICAL]
    assert sorted([normal, critical], key=queue_key) == [critical, normal]


def test_age_still_counts_when_urgent_one_comes_much_later() -> None:
    clock = FakeClock()
    normal = handoff("h-normal", created_at=clock.now(), urgency=Urgency.NORMAL)  # due at 120 s
    clock.advance(100)
    critical = handoff("h-critical", created_at=clock.now(), urgency=Urgency.CRITICAL)  # 130 s
    assert sorted([critical, normal], key=queue_key) == [normal, critical]


def test_equal_deadline_older_first() -> None:
    older = handoff("h-b", created_at=at(0), deadline=at(100))
    newer = handoff("h-a", created_at=at(1), deadline=at(100))
    assert sorted([newer, older], key=queue_key) == [older, newer]


def test_equal_deadline_and_age_id_decides() -> None:
    x = handoff("h-x", created_at=at(0), deadline=at(100))
    y = handoff("h-y", created_at=at(0), deadline=at(100))
    assert sorted([y, x], key=queue_key) == [x, y]


# --- example tests: agent choice ----------------------------------------------------------------


def test_proficiency_score_sums_required_skills_only() -> None:
    a = agent(skills={"billing": 4, "fraud": 2, "tech": 5})
    assert proficiency_score(a, handoff(skills={"billing": 1, "fraud": 1})) == 6
    assert proficiency_score(a, handoff(skills={})) == 0
    assert proficiency_score(a, handoff(skills={"legal": 1})) == 0


def test_agent_rank_key_prefers_score_then_idle_then_id() -> None:
    h = handoff(skills={"billing": 1})
    assert agent_rank_key(agent("b", skills={"billing": 4}, last_assigned_at=at(5)), h) == (
        0,
        -4,
        0,  # no quality band: quality does not rank
        at(5),
        "b",
    )
    strong_busy = agent_rank_key(agent("z", skills={"billing": 5}, last_assigned_at=at(99)), h)
    weak_idle = agent_rank_key(agent("a", skills={"billing": 1}), h)
    never = agent_rank_key(agent("n", skills={"billing": 1}), h)
    long_ago = agent_rank_key(
        agent("m", skills={"billing": 1}, last_assigned_at=T0 - timedelta(days=3650)), h
    )
    assert strong_busy < weak_idle
    assert never < long_ago
    assert weak_idle < never  # same score, both never assigned: "a" before "n"


def test_routine_work_goes_to_the_least_expert_who_qualifies() -> None:
    """A handoff routed LEAST_EXPERT (order lookups, standard refunds) keeps the experts
    free: first the agent whose best skill, in any skill, is lowest; then the least
    proficient on the handoff's skills; then the longest idle."""
    routine = dataclasses.replace(
        handoff(skills={"billing": 2}), agent_order=AgentOrder.LEAST_EXPERT
    )
    expert = agent("expert", skills={"billing": 5})
    junior = agent("junior", skills={"billing": 2}, last_assigned_at=at(100))
    novice = agent("novice", skills={"billing": 1})  # does not qualify
    assert choose_agent(routine, [expert, junior, novice]) == junior
    assert agent_rank_key(junior, routine) == (2, 2, 0, at(100), "junior")
    # An agent who does billing at 3 but fraud at 5 is kept for fraud: the billing
    # specialist (best skill 4) goes first, although more proficient at billing.
    fraud_expert = agent("fraud-expert", skills={"billing": 3, "fraud": 5})
    specialist = agent("specialist", skills={"billing": 4, "orders": 2})
    assert choose_agent(routine, [fraud_expert, specialist]) == specialist
    # Among equals, the longest idle still goes first.
    idle = agent("idle", skills={"billing": 2})
    assert choose_agent(routine, [expert, junior, idle]) == idle
    # The same pool, most proficient first (the default).
    most = dataclasses.replace(routine, agent_order=AgentOrder.MOST_PROFICIENT)
    assert choose_agent(most, [expert, junior]) == expert


def test_most_proficient_agent_wins_over_longest_idle() -> None:
    h = handoff(skills={"billing": 2})
    idle = agent("idle", skills={"billing": 3})  # never assigned
    expert = agent("expert", skills={"billing": 5}, last_assigned_at=at(100))
    assert choose_agent(h, [idle, expert]) == expert


def test_proficiency_is_summed_over_required_skills() -> None:
    h = handoff(skills={"billing": 1, "fraud": 1})
    one_expert = agent("a", skills={"billing": 5, "fraud": 1})  # 6
    all_round = agent("b", skills={"billing": 4, "fraud": 4})  # 8
    assert choose_agent(h, [one_expert, all_round]) == all_round


def test_unrequired_skills_do_not_count() -> None:
    h = handoff(skills={"billing": 1})
    specialist = agent("a", skills={"billing": 4}, last_assigned_at=at(10))
    generalist = agent("b", skills={"billing": 3, "fraud": 5, "tech": 5})
    assert choose_agent(h, [generalist, specialist]) == specialist


def test_never_assigned_agent_goes_first_on_equal_proficiency() -> None:
    h = handoff(skills={"billing": 1})
    veteran = agent("a", skills={"billing": 3}, last_assigned_at=T0 - timedelta(days=365))
    fresh = agent("z", skills={"billing": 3}, last_assigned_at=None)
    assert choose_agent(h, [veteran, fresh]) == fresh


def test_longest_idle_goes_first_on_equal_proficiency() -> None:
    clock = FakeClock()
    h = handoff(skills={"billing": 1})
    first = agent("z", skills={"billing": 3}, last_assigned_at=clock.now())
    clock.advance(30)
    second = agent("a", skills={"billing": 3}, last_assigned_at=clock.now())
    assert choose_agent(h, [second, first]) == first


def test_id_breaks_a_full_tie() -> None:
    h = handoff(skills={"billing": 1})
    b = agent("b", skills={"billing": 3}, last_assigned_at=at(0))
    a = agent("a", skills={"billing": 3}, last_assigned_at=at(0))
    assert choose_agent(h, [b, a]) == a


def test_choose_agent_skips_ineligible_and_excluded() -> None:
    h = handoff(skills={"billing": 1})
    best_but_busy = agent("a", skills={"billing": 5}, load=1)
    best_but_declined = agent("b", skills={"billing": 5})
    fine = agent("c", skills={"billing": 1})
    assert choose_agent(h, [best_but_busy, best_but_declined, fine], excluded={"b"}) == fine


def test_choose_agent_none_when_nobody_is_eligible() -> None:
    h = handoff(skills={"fraud": 4})
    assert choose_agent(h, []) is None
    assert choose_agent(h, [agent(skills={"fraud": 3})]) is None
    assert choose_agent(h, [agent(skills={"fraud": 4})], excluded={"agent-1"}) is None


def test_choose_agent_accepts_a_one_shot_iterable() -> None:
    a = agent("a")
    assert choose_agent(handoff(), iter([a])) == a


def test_choose_handoff_takes_the_head_of_the_queue_it_qualifies_for() -> None:
    a = agent(skills={"billing": 3}, languages=["en"])
    head_unqualified = handoff("h1", created_at=at(0), skills={"fraud": 1})
    wrong_language = handoff("h2", created_at=at(1), language="de")
    declined = handoff("h3", created_at=at(2))
    taken = handoff("h4", created_at=at(3), state=HandoffState.OFFERED)
    mine = handoff("h5", created_at=at(4), skills={"billing": 3})
    later = handoff("h6", created_at=at(5))
    candidates = [later, taken, mine, declined, wrong_language, head_unqualified]
    assert choose_handoff(a, candidates, excluded={"h3"}) == mine


def test_choose_handoff_prefers_urgency() -> None:
    a = agent()
    normal = handoff("h1", created_at=at(0), urgency=Urgency.NORMAL)
    critical = handoff("h2", created_at=at(60), urgency=Urgency.CRITICAL)
    assert choose_handoff(a, [normal, critical]) == critical


def test_choose_handoff_none_for_unavailable_agent_or_empty_queue() -> None:
    assert choose_handoff(agent(), []) is None
    assert choose_handoff(agent(status=AgentStatus.AWAY), [handoff()]) is None
    assert choose_handoff(agent(), [handoff("h1")], excluded={"h1"}) is None


# --- example tests: plan_matches ----------------------------------------------------------------


def test_plan_gives_each_handoff_the_best_free_agent_in_queue_order() -> None:
    expert = agent("expert", skills={"billing": 5})
    novice = agent("novice", skills={"billing": 1})
    first = handoff("h1", created_at=at(0), skills={"billing": 1})
    second = handoff("h2", created_at=at(1), skills={"billing": 1})
    assert plan_matches([second, first], [novice, expert]) == [
        ("h1", "expert"),
        ("h2", "novice"),
    ]


def test_plan_fills_free_capacity_and_no_more() -> None:
    a = agent("a", capacity=3, load=1)
    hs = [handoff(f"h{i}", created_at=at(i)) for i in range(4)]
    assert plan_matches(hs, [a]) == [("h0", "a"), ("h1", "a")]


def test_plan_respects_exclusions() -> None:
    a = agent("a", skills={"billing": 5})
    b = agent("b", skills={"billing": 1})
    h = handoff("h1", skills={"billing": 1})
    assert plan_matches([h], [a, b], {"h1": {"a"}}) == [("h1", "b")]
    assert plan_matches([h], [a, b], {"h1": {"a", "b"}}) == []


def test_plan_skips_handoffs_nobody_can_take_and_serves_later_ones() -> None:
    a = agent("a", skills={"billing": 2}, capacity=1)
    fraud = handoff("h1", created_at=at(0), skills={"fraud": 1})
    billing = handoff("h2", created_at=at(1), skills={"billing": 1})
    assert plan_matches([fraud, billing], [a]) == [("h2", "a")]


def test_plan_greedy_gives_head_of_queue_its_best_agent_even_if_it_strands_a_later_one() -> None:
    # Greedy in queue order, not a maximum matching. Both agents score 5 for h1 and neither
    # was ever assigned, so the id decides; when the expert's id sorts first, h1 takes it and
    # h2, which only the expert could serve, is left waiting. That is the rule.
    expert = agent("expert", skills={"billing": 5, "fraud": 5})
    billing_only = agent("billing", skills={"billing": 5})
    h1 = handoff("h1", created_at=at(0), skills={"billing": 1})
    h2 = handoff("h2", created_at=at(1), skills={"fraud": 1})
    plan = plan_matches([h1, h2], [billing_only, expert])
    assert plan == [("h1", "billing"), ("h2", "expert")]  # "billing" < "expert"
    expert_first = dataclasses.replace(expert, id="a-expert")
    assert plan_matches([h1, h2], [billing_only, expert_first]) == [("h1", "a-expert")]


def test_plan_ignores_handoffs_that_are_not_queued() -> None:
    a = agent("a", capacity=2)
    offered = handoff("h1", state=HandoffState.OFFERED, created_at=at(0))
    queued = handoff("h2", created_at=at(1))
    assert plan_matches([offered, queued], [a]) == [("h2", "a")]


def test_plan_of_empty_snapshot_is_empty() -> None:
    assert plan_matches([], []) == []
    assert plan_matches([handoff()], []) == []
    assert plan_matches([], [agent()]) == []


def test_plan_accepts_one_shot_iterables() -> None:
    # Regression: plan_matches once iterated `agents`, declared
    # `Iterable[Agent]`, twice: once for `remaining`, once for `pool`. A generator is used up
    # by the first pass, so the pool is empty and nothing is ever matched.
    a = agent("a")
    h = handoff("h1")
    assert plan_matches([h], [a]) == [("h1", "a")]
    assert plan_matches(iter([h]), iter([a])) == [("h1", "a")]


# --- reference implementation (independent of the module under test) --------------------------


def ref_available(a: Agent) -> bool:
    return a.status == AgentStatus.AVAILABLE and a.connected and a.load < a.profile.capacity


def ref_qualified(a: Agent, h: Handoff) -> bool:
    lang = h.request.language
    if lang is not None and lang not in a.profile.languages:
        return False
    for need in h.request.required_skills:
        if need.skill not in a.profile.skills:
            return False
        if a.profile.skills[need.skill] < need.min_proficiency:
            return False
    return True


def ref_eligible(a: Agent, h: Handoff, excluded: Collection[str] = ()) -> bool:
    if h.state != HandoffState.QUEUED or a.id in excluded:
        return False
    return ref_available(a) and ref_qualified(a, h)


def ref_score(a: Agent, h: Handoff) -> int:
    total = 0
    for need in h.request.required_skills:
        if need.skill in a.profile.skills:
            total += a.profile.skills[need.skill]
    return total


def ref_better(a: Agent, b: Agent, h: Handoff) -> bool:
    """Is `a` strictly preferred over `b` for `h`?"""
    sa, sb = ref_score(a, h), ref_score(b, h)
    if sa != sb:
        return sa > sb
    la, lb = a.last_assigned_at, b.last_assigned_at
    if la != lb:
        if la is None:
            return True
        if lb is None:
            return False
        return la < lb
    return a.id < b.id


def ref_choose_agent(
    h: Handoff, agents: Sequence[Agent], excluded: Collection[str]
) -> Agent | None:
    best: Agent | None = None
    for a in agents:
        if ref_eligible(a, h, excluded) and (best is None or ref_better(a, best, h)):
            best = a
    return best


def ref_ahead(x: Handoff, y: Handoff) -> bool:
    """Is `x` strictly ahead of `y` in the queue?"""
    if x.deadline != y.deadline:
        return x.deadline < y.deadline
    if x.created_at != y.created_at:
        return x.created_at < y.created_at
    return x.id < y.id


def ref_queue(handoffs: Sequence[Handoff]) -> list[Handoff]:
    def cmp(x: Handoff, y: Handoff) -> int:
        return -1 if ref_ahead(x, y) else (1 if ref_ahead(y, x) else 0)

    return sorted(handoffs, key=functools.cmp_to_key(cmp))


def ref_choose_handoff(
    a: Agent, handoffs: Sequence[Handoff], excluded: Collection[str]
) -> Handoff | None:
    best: Handoff | None = None
    for h in handoffs:
        if h.id in excluded or not ref_eligible(a, h):
            continue
        if best is None or ref_ahead(h, best):
            best = h
    return best


def ref_plan(
    handoffs: Sequence[Handoff], agents: Sequence[Agent], exclusions: Mapping[str, Collection[str]]
) -> list[tuple[str, str]]:
    left = {a.id: a.profile.capacity - a.load for a in agents}
    plan = []
    for h in ref_queue(handoffs):
        free = [a for a in agents if left[a.id] > 0]
        best = ref_choose_agent(h, free, exclusions.get(h.id, ()))
        if best is not None:
            left[best.id] -= 1
            plan.append((h.id, best.id))
    return plan


def free_slots(a: Agent) -> int:
    return a.profile.capacity - a.load if ref_available(a) else 0


# --- strategies ---------------------------------------------------------------------------------
# Drawing dominates the cost of these properties (a draw per field makes a snapshot cost
# milliseconds), so a snapshot is drawn as one fixed-size byte string and decoded here: each
# field takes the next byte modulo its range. Shrinking moves bytes toward 0, which decodes
# to the simplest values (no agents or handoffs, capacity 1, AVAILABLE, never assigned, no
# skills needed). Few skills, languages and instants make ties in proficiency, idle time,
# deadline and age common. `note` prints the decoded snapshot of a failing example.

SKILLS = ("billing", "fraud", "tech")
LANGUAGES = ("en", "de", "fr")
URGENCIES = tuple(Urgency)
POLICY = DispatchPolicy()
MAX_AGENTS, MAX_HANDOFFS, MAX_EXCLUSIONS = 7, 8, 6
STATUSES = (AgentStatus.AVAILABLE,) * 6 + (AgentStatus.AWAY, AgentStatus.OFFLINE)
HANDOFF_STATES = (HandoffState.QUEUED,) * 5 + tuple(HandoffState)
NEEDS = (0, 0, 0, 0, 1, 1, 2, 3, 4, 5)  # a handoff's minimum per skill, 0 = not needed
SNAPSHOT_BYTES = 2 + MAX_AGENTS * 13 + MAX_HANDOFFS * 12 + 1 + 2 * MAX_EXCLUSIONS


class ByteReader:
    """Small integers from a byte string; 0 once it runs out."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def below(self, n: int) -> int:
        """The next value in range(n)."""
        b = self._data[self._pos] if self._pos < len(self._data) else 0
        self._pos += 1
        return b % n

    def permutation(self, n: int) -> list[int]:
        """A permutation of range(n) (Fisher-Yates); the identity for zero bytes."""
        items = list(range(n))
        for i in range(n - 1, 0, -1):
            j = i - self.below(i + 1)
            items[i], items[j] = items[j], items[i]
        return items


def instant(step: int) -> datetime:
    return T0 + timedelta(seconds=30 * step)


def read_agent(r: ByteReader, agent_id: str) -> Agent:
    capacity = (1, 1, 2, 3)[r.below(4)]
    load = max(0, r.below(capacity + 4) - 2)  # mostly below capacity, at times above
    status = STATUSES[r.below(len(STATUSES))]
    connected = r.below(8) != 7
    last = r.below(8) - 1  # -1: never assigned
    levels = [r.below(6) for _ in SKILLS]  # 0: lacks the skill
    speaks = [r.below(4) != 0 for _ in LANGUAGES]
    return agent(
        agent_id,
        capacity=capacity,
        load=load,
        status=status,
        connected=connected,
        last_assigned_at=None if last < 0 else instant(last),
        skills={s: p for s, p in zip(SKILLS, levels, strict=True) if p},
        languages=[lang for lang, yes in zip(LANGUAGES, speaks, strict=True) if yes],
    )


def read_handoff(r: ByteReader, handoff_id: str) -> Handoff:
    created = instant(r.below(7))
    urgency = URGENCIES[r.below(len(URGENCIES))]
    requeued = r.below(8) - 1  # -1: never requeued
    state = HANDOFF_STATES[r.below(len(HANDOFF_STATES))]
    needs = [NEEDS[r.below(len(NEEDS))] for _ in SKILLS]
    language = r.below(len(LANGUAGES) + 2) - 2  # negative: any language
    deadline = POLICY.deadline(created, urgency)
    if requeued >= 0:  # as requeue_deadline makes it
        deadline = min(deadline, instant(requeued))
    return handoff(
        handoff_id,
        state=state,
        created_at=created,
        deadline=deadline,
        skills={s: p for s, p in zip(SKILLS, needs, strict=True) if p},
        language=None if language < 0 else LANGUAGES[language],
        urgency=urgency,
    )


Snapshot = tuple[list[Handoff], list[Agent], dict[str, frozenset[str]]]


def decode_snapshot(data: bytes) -> Snapshot:
    r = ByteReader(data)
    n_agents, n_handoffs = r.below(MAX_AGENTS + 1), r.below(MAX_HANDOFFS + 1)
    # Ids are a permutation of the list positions, so id order and input order differ.
    agent_ids = r.permutation(n_agents)
    handoff_ids = r.permutation(n_handoffs)
    agents = [read_agent(r, f"a{i}") for i in agent_ids]
    handoffs = [read_handoff(r, f"h{i}") for i in handoff_ids]
    exclusions: dict[str, set[str]] = {}
    for _ in range(r.below(MAX_EXCLUSIONS + 1)):
        hi, ai = r.below(max(n_handoffs, 1)), r.below(max(n_agents, 1))
        if handoffs and agents:
            exclusions.setdefault(handoffs[hi].id, set()).add(agents[ai].id)
    return handoffs, agents, {k: frozenset(v) for k, v in exclusions.items()}


def describe(snapshot: Snapshot) -> str:
    """A compact, readable snapshot for a failing example's report."""
    handoffs, agents, exclusions = snapshot
    lines = ["agents:"]
    for a in agents:
        last = None if a.last_assigned_at is None else (a.last_assigned_at - T0).seconds
        lines.append(
            f"  {a.id} {a.status.value} connected={a.connected} load={a.load}/"
            f"{a.profile.capacity} skills={dict(a.profile.skills)} "
            f"languages={sorted(a.profile.languages)} last_assigned=T0+{last}"
        )
    lines.append("handoffs:")
    for h in handoffs:
        needs = {r.skill: r.min_proficiency for r in h.request.required_skills}
        lines.append(
            f"  {h.id} {h.state.value} deadline=T0+{(h.deadline - T0).seconds} "
            f"created=T0+{(h.created_at - T0).seconds} needs={needs} "
            f"language={h.request.language}"
        )
    lines.append(f"exclusions: { {k: sorted(v) for k, v in exclusions.items()} }")
    return "\n".join(lines)


snapshots = st.binary(min_size=SNAPSHOT_BYTES, max_size=SNAPSHOT_BYTES).map(decode_snapshot)


def test_strategy_reaches_interesting_snapshots() -> None:
    """Guards the generator against drifting into trivial inputs: enough snapshots must have
    a match, contention for an agent, and an exclusion that matters."""
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(snapshot=snapshots)
    def probe(snapshot: Snapshot) -> None:
        handoffs, agents, exclusions = snapshot
        if plan_matches(handoffs, agents, exclusions):
            seen["matched"] += 1
        wanted = Counter(a.id for h in handoffs for a in agents if ref_eligible(a, h))
        if any(wanted[a.id] > free_slots(a) for a in agents if wanted[a.id]):
            seen["contended"] += 1
        if any(
            a.id in exclusions.get(h.id, ()) and ref_eligible(a, h)
            for h in handoffs
            for a in agents
        ):
            seen["excluded_eligible"] += 1

    probe()
    assert min(seen["matched"], seen["contended"], seen["excluded_eligible"]) >= 20, seen


# --- properties: single decisions ---------------------------------------------------------------


@MAIN
@given(snapshot=snapshots)
def test_eligibility_matches_reference(snapshot: Snapshot) -> None:
    handoffs, agents, exclusions = snapshot
    note(describe(snapshot))
    for h in handoffs:
        for a in agents:
            for excluded in ((), exclusions.get(h.id, ()), (a.id,)):
                assert is_eligible(a, h, excluded) == ref_eligible(a, h, excluded)
            assert has_skills(a, h) == ref_qualified(a, h)
            assert proficiency_score(a, h) == ref_score(a, h)


@MAIN
@given(snapshot=snapshots, data=st.data())
def test_choose_agent_matches_reference(snapshot: Snapshot, data: st.DataObject) -> None:
    handoffs, agents, exclusions = snapshot
    note(describe(snapshot))
    shuffled = random.Random(data.draw(st.integers(0, 2**32))).sample(agents, len(agents))
    for h in handoffs:
        excluded = exclusions.get(h.id, frozenset())
        chosen = choose_agent(h, agents, excluded)
        assert chosen == ref_choose_agent(h, agents, excluded)
        # Candidate order does not matter.
        assert choose_agent(h, shuffled, excluded) == chosen
        if chosen is not None:
            # Nobody eligible ranks strictly better.
            assert not any(ref_better(b, chosen, h) for b in agents if ref_eligible(b, h, excluded))


@MAIN
@given(snapshot=snapshots)
def test_choose_handoff_matches_reference(snapshot: Snapshot) -> None:
    handoffs, agents, exclusions = snapshot
    note(describe(snapshot))
    for a in agents:
        declined = {hid for hid, ex in exclusions.items() if a.id in ex}
        chosen = choose_handoff(a, handoffs, declined)
        assert chosen == ref_choose_handoff(a, handoffs, declined)
        assert choose_handoff(a, list(reversed(handoffs)), declined) == chosen
        if chosen is not None:
            assert chosen.id not in declined
            assert ref_eligible(a, chosen)


@MAIN
@given(snapshot=snapshots)
def test_queue_key_orders_like_reference(snapshot: Snapshot) -> None:
    handoffs, _, _ = snapshot
    assert sorted(handoffs, key=queue_key) == ref_queue(handoffs)


# --- properties: plan_matches -------------------------------------------------------------------


def check_valid_assignment(snapshot: Snapshot, plan: list[tuple[str, str]]) -> None:
    """No handoff twice, no agent beyond its free capacity, only eligible and non-excluded
    pairs, listed in queue order."""
    handoffs, agents, exclusions = snapshot
    by_h = {h.id: h for h in handoffs}
    by_a = {a.id: a for a in agents}
    assert len({hid for hid, _ in plan}) == len(plan)
    for aid, n in Counter(aid for _, aid in plan).items():
        assert n <= free_slots(by_a[aid]), (aid, n)
    for hid, aid in plan:
        assert ref_eligible(by_a[aid], by_h[hid], exclusions.get(hid, ())), (hid, aid)
    order = {h.id: i for i, h in enumerate(ref_queue(handoffs))}
    assert [order[hid] for hid, _ in plan] == sorted(order[hid] for hid, _ in plan)


def check_maximal(snapshot: Snapshot, plan: list[tuple[str, str]]) -> None:
    """Afterwards no queued handoff has an eligible agent with room left."""
    handoffs, agents, exclusions = snapshot
    matched = {hid for hid, _ in plan}
    used = Counter(aid for _, aid in plan)
    for h in handoffs:
        if h.id in matched:
            continue
        for a in agents:
            if ref_eligible(a, h, exclusions.get(h.id, ())):
                assert used[a.id] >= free_slots(a), (h.id, a.id)


def check_fixed_point(snapshot: Snapshot, plan: list[tuple[str, str]]) -> None:
    """With the plan applied (loads raised, handoffs offered) neither a handoff event
    (choose_agent) nor an agent event (choose_handoff) finds anything more to do."""
    handoffs, agents, exclusions = snapshot
    used = Counter(aid for _, aid in plan)
    matched = {hid for hid, _ in plan}
    after_agents = [dataclasses.replace(a, load=a.load + used[a.id]) for a in agents]
    after_handoffs = [
        dataclasses.replace(h, state=HandoffState.OFFERED) if h.id in matched else h
        for h in handoffs
    ]
    for h in after_handoffs:
        assert choose_agent(h, after_agents, exclusions.get(h.id, ())) is None, h.id
    for a in after_agents:
        declined = {hid for hid, ex in exclusions.items() if a.id in ex}
        assert choose_handoff(a, after_handoffs, declined) is None, a.id


def check_no_overtaking(snapshot: Snapshot, plan: list[tuple[str, str]]) -> None:
    """If a handoff later in the queue got agent X and an earlier one could have had X, the
    earlier one was matched too, with X or an agent it ranks above X."""
    handoffs, agents, exclusions = snapshot
    by_a = {a.id: a for a in agents}
    got = dict(plan)
    queue = ref_queue(handoffs)
    for i, earlier in enumerate(queue):
        for later in queue[i + 1 :]:
            if later.id not in got:
                continue
            x = by_a[got[later.id]]
            if not ref_eligible(x, earlier, exclusions.get(earlier.id, ())):
                continue
            assert earlier.id in got, (earlier.id, later.id, x.id)
            mine = by_a[got[earlier.id]]
            assert mine == x or ref_better(mine, x, earlier), (earlier.id, mine.id, x.id)


def check_best_left_at_each_turn(snapshot: Snapshot, plan: list[tuple[str, str]]) -> None:
    """Every eligible agent ranked above the one a handoff got (or, if it got none, every
    eligible agent) was already filled by handoffs ahead of it in the queue."""
    handoffs, agents, exclusions = snapshot
    by_a = {a.id: a for a in agents}
    got = dict(plan)
    taken_before: Counter[str] = Counter()
    for h in ref_queue(handoffs):
        mine = by_a[got[h.id]] if h.id in got else None
        for b in agents:
            if b == mine or not ref_eligible(b, h, exclusions.get(h.id, ())):
                continue
            if mine is None or ref_better(b, mine, h):
                assert taken_before[b.id] >= free_slots(b), (h.id, b.id)
        if mine is not None:
            taken_before[mine.id] += 1


@HEAVY
@given(snapshot=snapshots, data=st.data())
def test_plan_matches_guarantees(snapshot: Snapshot, data: st.DataObject) -> None:
    """One snapshot, every guarantee of the greedy plan (drawing dominates the cost, so the
    checks share it); each check is a function above that names what it holds."""
    handoffs, agents, exclusions = snapshot
    note(describe(snapshot))
    plan = plan_matches(handoffs, agents, exclusions)
    note(f"plan: {plan}")
    assert plan == ref_plan(handoffs, agents, exclusions)
    check_valid_assignment(snapshot, plan)
    check_maximal(snapshot, plan)
    check_fixed_point(snapshot, plan)
    check_no_overtaking(snapshot, plan)
    check_best_left_at_each_turn(snapshot, plan)
    # Input order does not matter.
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    hs = rng.sample(handoffs, len(handoffs))
    as_ = rng.sample(agents, len(agents))
    assert plan_matches(hs, as_, exclusions) == plan
    # No exclusions given means none.
    if not exclusions:
        assert plan_matches(handoffs, agents) == plan


@MAIN
@given(snapshot=snapshots, data=st.data())
def test_plan_one_more_exclusion_changes_only_what_it_must(
    snapshot: Snapshot, data: st.DataObject
) -> None:
    """Excluding an agent from a handoff it did not get changes nothing; excluding the one
    it got keeps every pair ahead of it in the queue and never pairs the two."""
    handoffs, agents, exclusions = snapshot
    note(describe(snapshot))
    if not handoffs or not agents:
        return
    h = handoffs[data.draw(st.integers(0, len(handoffs) - 1))]
    a = agents[data.draw(st.integers(0, len(agents) - 1))]
    plan = plan_matches(handoffs, agents, exclusions)
    more = {**exclusions, h.id: exclusions.get(h.id, frozenset()) | {a.id}}
    replanned = plan_matches(handoffs, agents, more)
    if (h.id, a.id) not in plan:
        assert replanned == plan
    else:
        ahead = plan[: plan.index((h.id, a.id))]
        assert replanned[: len(ahead)] == ahead
        assert (h.id, a.id) not in replanned
    everyone = {x.id: frozenset(b.id for b in agents) for x in handoffs}
    assert plan_matches(handoffs, agents, everyone) == []
