"""Dispatch rules that are not matching: deadlines, offer expiry, misses, re-queueing, waits.

`DispatchPolicy` holds the tunable numbers; the functions turn a state and a time into a
decision. All pure and deterministic given their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from humanline.domain.model import Agent, AgentStatus, Handoff, Urgency, WaitPlan

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

    def offer_expiry(self, now: datetime, handoff: Handoff | None = None) -> datetime:
        """When an offer (of `handoff`) made now counts as missed: the handoff's routing
        policy says how long its offers wait, else the server's setting."""
        timeout = handoff.plan.offer_timeout if handoff is not None else None
        return now + (self.offer_timeout if timeout is None else timeout)


def requeue_deadline(handoff: Handoff, now: datetime) -> datetime:
    """Deadline of an accepted handoff going back to the queue after its agent was lost.

    It keeps its original deadline if that is earlier, and is otherwise due now, which puts it
    ahead of every handoff queued after this moment (their deadlines lie in the future).
    """
    return min(handoff.deadline, now)


def requeue_plan(handoff: Handoff, now: datetime) -> WaitPlan:
    """The wait plan of an accepted handoff going back to the queue: its maximum wait starts
    again (the customer did reach a human), its relaxation stays where it was, and the
    wait for its known agent and the experts' reserve are over (that agent was the one
    lost, or the wait was; the customer has waited once already)."""
    plan = handoff.plan
    expires_at = None
    if plan.expires_at is not None:
        expires_at = now + (plan.expires_at - handoff.created_at)
    return replace(plan, expires_at=expires_at, preferred_until=None, experts_from=None)


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
    *, ahead: int, eligible_capacity: int, mean_handle_time: timedelta
) -> timedelta | None:
    """Expected time until an agent takes a queued handoff with `ahead` handoffs before it
    that the same agents could take, when none of those agents is free (matching would
    have offered it otherwise).

    It waits for slots to free up as interactions end. With every eligible slot busy, each
    ending on average `mean_handle_time` after it began and at random (handle times vary
    widely), one frees up every `mean_handle_time / eligible_capacity` on average, and the
    handoff waits for `ahead + 1` of them. None when no eligible agent is online at all: no
    honest estimate exists.
    """
    if eligible_capacity <= 0:
        return None
    return mean_handle_time * (ahead + 1) / eligible_capacity
