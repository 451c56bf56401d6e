"""Dispatch rules that are not matching: deadlines, offer expiry, misses, re-queueing, waits.

`DispatchPolicy` holds the tunable numbers; the functions turn a state and a time into a
decision. All pure and deterministic given their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from humanline.domain.model import Agent, AgentStatus, Handoff, Urgency

DEFAULT_TARGETS: dict[Urgency, timedelta] = {
    Urgency.CRITICAL: timedelta(seconds=30),
    Urgency.HIGH: timedelta(seconds=60),
    Urgency.NORMAL: timedelta(seconds=120),
    Urgency.LOW: timedelta(seconds=300),
}


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """The numbers that shape dispatch; set from configuration."""

    targets: dict[Urgency, timedelta] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    offer_timeout: timedelta = timedelta(seconds=15)
    max_consecutive_misses: int = 2
    grace_period: timedelta = timedelta(seconds=30)
    heartbeat_interval: timedelta = timedelta(seconds=10)
    heartbeat_misses: int = 3
    default_handle_time: timedelta = timedelta(minutes=5)

    @property
    def heartbeat_timeout(self) -> timedelta:
        """Silence after which a stream counts as dead (about three intervals)."""
        return self.heartbeat_interval * self.heartbeat_misses

    def deadline(self, enqueued_at: datetime, urgency: Urgency) -> datetime:
        """When an agent should have the handoff at the latest; orders the queue."""
        return enqueued_at + self.targets[urgency]

    def offer_expiry(self, now: datetime) -> datetime:
        """When an offer made now counts as missed."""
        return now + self.offer_timeout


def requeue_deadline(handoff: Handoff, now: datetime) -> datetime:
    """Deadline of an accepted handoff going back to the queue after its agent was lost.

    It keeps its original deadline if that is earlier, and is otherwise due now, which puts it
    ahead of every handoff queued after this moment (their deadlines lie in the future).
    """
    return min(handoff.deadline, now)


@dataclass(frozen=True, slots=True)
class MissDecision:
    """What an expired offer does to its agent."""

    consecutive_misses: int
    set_away: bool


def decide_miss(agent: Agent, policy: DispatchPolicy) -> MissDecision:
    """An offer expired unanswered: count the miss; enough in a row set the agent away."""
    misses = agent.consecutive_misses + 1
    away = misses >= policy.max_consecutive_misses and agent.status is AgentStatus.AVAILABLE
    return MissDecision(consecutive_misses=0 if away else misses, set_away=away)


def estimate_wait(
    *,
    position: int,
    eligible_capacity: int,
    eligible_free: int,
    mean_handle_time: timedelta,
) -> timedelta | None:
    """Expected time until an agent takes the handoff at `position` (1-based, queue order).

    With an eligible agent free now the offer is imminent. Otherwise each slot of the eligible
    agents' capacity frees up once per mean handle time, so the handoffs ahead drain at
    `eligible_capacity / mean_handle_time`. None when no eligible agent is online at all: no
    honest estimate exists.
    """
    if eligible_free > 0:
        return timedelta(0)
    if eligible_capacity <= 0:
        return None
    rounds = math.ceil(position / eligible_capacity)
    return mean_handle_time * rounds
