"""Dispatch rules (humanline.domain.rules): the policy's deadlines, offer expiry and heartbeat
timeout, the deadline of a requeued handoff, what a missed offer does to its agent, and the
wait estimate a bot shows its customer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanline.domain.clock import FakeClock
from humanline.domain.matching import queue_key
from humanline.domain.model import AgentStatus, Urgency
from humanline.domain.rules import (
    DEFAULT_TARGETS,
    DispatchPolicy,
    MissDecision,
    decide_miss,
    estimate_wait,
    requeue_deadline,
)
from tests.unit.builders import T0, agent, at, handoff

# --- DispatchPolicy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urgency", "seconds"),
    [(Urgency.CRITICAL, 30), (Urgency.HIGH, 60), (Urgency.NORMAL, 120), (Urgency.LOW, 300)],
)
def test_deadline_is_enqueue_time_plus_the_urgency_target(urgency: Urgency, seconds: int) -> None:
    clock = FakeClock()
    clock.advance(42)
    assert DispatchPolicy().deadline(clock.now(), urgency) == clock.now() + timedelta(
        seconds=seconds
    )


def test_more_urgent_means_earlier_deadline() -> None:
    policy = DispatchPolicy()
    deadlines = [policy.deadline(T0, u) for u in sorted(Urgency, reverse=True)]
    assert deadlines == sorted(deadlines)
    assert len(set(deadlines)) == len(deadlines)


def test_custom_targets_are_used() -> None:
    targets = {u: timedelta(seconds=int(u) * 7) for u in Urgency}
    policy = DispatchPolicy(targets=targets)
    assert policy.deadline(T0, Urgency.HIGH) == at(21)
    assert policy.deadline(T0, Urgency.LOW) == at(7)


def test_policies_do_not_share_their_targets() -> None:
    a, b = DispatchPolicy(), DispatchPolicy()
    a.targets[Urgency.LOW] = timedelta(seconds=1)
    assert b.targets[Urgency.LOW] == timedelta(seconds=300)
    assert DEFAULT_TARGETS[Urgency.LOW] == timedelta(seconds=300)


def test_offer_expiry_is_now_plus_offer_timeout() -> None:
    clock = FakeClock()
    now = clock.advance(5)
    assert DispatchPolicy().offer_expiry(now) == now + timedelta(seconds=15)
    fast = DispatchPolicy(offer_timeout=timedelta(seconds=2.5))
    assert fast.offer_expiry(now) == now + timedelta(seconds=2.5)


@pytest.mark.parametrize(
    ("interval", "misses", "timeout"),
    [(10, 3, 30), (5, 3, 15), (10, 1, 10), (2.5, 4, 10)],
)
def test_heartbeat_timeout_is_interval_times_misses(
    interval: float, misses: int, timeout: float
) -> None:
    policy = DispatchPolicy(heartbeat_interval=timedelta(seconds=interval), heartbeat_misses=misses)
    assert policy.heartbeat_timeout == timedelta(seconds=timeout)


def test_default_heartbeat_timeout_is_three_intervals() -> None:
    policy = DispatchPolicy()
    assert policy.heartbeat_timeout == 3 * policy.heartbeat_interval == timedelta(seconds=30)


# --- requeue_deadline ---------------------------------------------------------------------------


def test_requeue_keeps_an_earlier_original_deadline() -> None:
    h = handoff(created_at=T0, deadline=at(120))
    assert requeue_deadline(h, at(500)) == at(120)


def test_requeue_makes_a_later_deadline_due_now() -> None:
    h = handoff(created_at=T0, deadline=at(120))
    assert requeue_deadline(h, at(60)) == at(60)


def test_requeue_at_the_deadline_keeps_it() -> None:
    h = handoff(created_at=T0, deadline=at(120))
    assert requeue_deadline(h, at(120)) == at(120)


@settings(max_examples=300)
@given(deadline=st.integers(-1000, 1000), now=st.integers(-1000, 1000))
def test_requeue_deadline_is_the_earlier_of_both(deadline: int, now: int) -> None:
    h = handoff(created_at=at(-2000), deadline=at(deadline))
    result = requeue_deadline(h, at(now))
    assert result == (at(deadline) if deadline <= now else at(now))


@settings(max_examples=300)
@given(
    lost_at=st.integers(0, 600),
    later=st.integers(0, 600),
    urgency=st.sampled_from(list(Urgency)),
)
def test_requeued_handoff_goes_ahead_of_everything_queued_after_it(
    lost_at: int, later: int, urgency: Urgency
) -> None:
    clock = FakeClock()
    original = handoff("h-z", created_at=clock.now(), urgency=Urgency.LOW)
    now = clock.advance(lost_at)
    requeued = handoff(
        "h-z",
        created_at=original.created_at,
        deadline=requeue_deadline(original, now),
        urgency=Urgency.LOW,
    )
    newcomer = handoff("h-a", created_at=clock.advance(later), urgency=urgency)
    assert queue_key(requeued) < queue_key(newcomer)


# --- decide_miss --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "misses", "decision"),
    [
        (AgentStatus.AVAILABLE, 0, MissDecision(consecutive_misses=1, set_away=False)),
        (AgentStatus.AVAILABLE, 1, MissDecision(consecutive_misses=0, set_away=True)),
        (AgentStatus.AVAILABLE, 5, MissDecision(consecutive_misses=0, set_away=True)),
        (AgentStatus.AWAY, 0, MissDecision(consecutive_misses=1, set_away=False)),
        (AgentStatus.AWAY, 1, MissDecision(consecutive_misses=2, set_away=False)),
        (AgentStatus.AWAY, 2, MissDecision(consecutive_misses=3, set_away=False)),
        (AgentStatus.OFFLINE, 1, MissDecision(consecutive_misses=2, set_away=False)),
    ],
)
def test_decide_miss(status: AgentStatus, misses: int, decision: MissDecision) -> None:
    a = agent(status=status, consecutive_misses=misses)
    assert decide_miss(a, DispatchPolicy()) == decision


def test_two_misses_in_a_row_set_an_available_agent_away_once() -> None:
    policy = DispatchPolicy()
    a = agent(status=AgentStatus.AVAILABLE, consecutive_misses=0)
    history = []
    for _ in range(5):
        d = decide_miss(a, policy)
        history.append(d.set_away)
        status = AgentStatus.AWAY if d.set_away else a.status
        a = agent(status=status, consecutive_misses=d.consecutive_misses)
    assert history == [False, True, False, False, False]
    assert a.status is AgentStatus.AWAY


def test_miss_threshold_comes_from_the_policy() -> None:
    policy = DispatchPolicy(max_consecutive_misses=3)
    assert decide_miss(agent(consecutive_misses=1), policy) == MissDecision(2, False)
    assert decide_miss(agent(consecutive_misses=2), policy) == MissDecision(0, True)
    strict = DispatchPolicy(max_consecutive_misses=1)
    assert decide_miss(agent(consecutive_misses=0), strict) == MissDecision(0, True)


@settings(max_examples=300)
@given(
    status=st.sampled_from(list(AgentStatus)),
    misses=st.integers(0, 10),
    limit=st.integers(1, 5),
)
def test_decide_miss_property(status: AgentStatus, misses: int, limit: int) -> None:
    d = decide_miss(
        agent(status=status, consecutive_misses=misses),
        DispatchPolicy(max_consecutive_misses=limit),
    )
    away = status is AgentStatus.AVAILABLE and misses + 1 >= limit
    assert d.set_away is away
    assert d.consecutive_misses == (0 if away else misses + 1)


# --- estimate_wait ------------------------------------------------------------------------------

MEAN = timedelta(minutes=4)


def test_no_estimate_without_eligible_capacity_online() -> None:
    assert estimate_wait(ahead=0, eligible_capacity=0, mean_handle_time=MEAN) is None


@pytest.mark.parametrize(
    ("ahead", "capacity", "slots"),
    [
        (0, 1, 1),  # the next slot to free up: one mean handle time with one slot
        (0, 4, 0.25),  # with four busy slots, one frees up four times as often
        (3, 4, 1),
        (9, 3, 10 / 3),
    ],
)
def test_wait_is_the_slots_to_free_up_at_the_rate_they_do(
    ahead: int, capacity: int, slots: float
) -> None:
    wait = estimate_wait(ahead=ahead, eligible_capacity=capacity, mean_handle_time=MEAN)
    assert wait is not None
    assert wait.total_seconds() == pytest.approx(MEAN.total_seconds() * slots)


@settings(max_examples=300)
@given(ahead=st.integers(0, 5000), capacity=st.integers(1, 200), mean_seconds=st.integers(1, 3600))
def test_wait_grows_with_the_queue_ahead_and_shrinks_with_capacity(
    ahead: int, capacity: int, mean_seconds: int
) -> None:
    mean = timedelta(seconds=mean_seconds)
    here = estimate_wait(ahead=ahead, eligible_capacity=capacity, mean_handle_time=mean)
    behind = estimate_wait(ahead=ahead + 1, eligible_capacity=capacity, mean_handle_time=mean)
    wider = estimate_wait(ahead=ahead, eligible_capacity=capacity + 1, mean_handle_time=mean)
    assert here is not None
    assert behind is not None
    assert wider is not None
    assert wider < here < behind
