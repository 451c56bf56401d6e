"""Risk-aware urgency: the bot's signals turned into an effective urgency and a proficiency
floor, with the reasons, so that ops can audit why a customer waited as they did.

A bot knows more than the topic: the customer's sentiment and distress, a suspected fraud, a
disputed amount, the customer's tier and tenure, its own confidence, and why it hands over.
`assess` weighs them with the routing policy of the interaction type: each rule that fires
raises the urgency (never lowers the bot's own) or the minimum proficiency, and says so in one
short phrase. The result reads like "urgency HIGH (asked NORMAL): distress and disputed amount
over 500; min proficiency 4: policy floor". Pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from humanline.domain.model import (
    AgentOrder,
    CustomerTier,
    HandoffReason,
    HandoffRequest,
    RiskClass,
    Signals,
    Urgency,
    WaitPlan,
)
from humanline.domain.routing import (
    PolicyChoice,
    RoutingPolicy,
    experts,
    plan_relaxation,
    requirements_at,
    span,
)
from humanline.domain.validation import MAX_PROFICIENCY


@dataclass(frozen=True, slots=True)
class RiskRules:
    """The thresholds the rules use."""

    large_amount: float = 500.0  # with distress: HIGH
    very_large_amount: float = 5000.0  # on its own: HIGH; with distress: CRITICAL
    negative_sentiment: float = -0.5  # at or below: one level up
    low_confidence: float = 0.3  # below, on a low-confidence handoff: a more proficient agent
    long_tenure_days: int = 5 * 365  # a long-standing customer: as a premium one


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The effective urgency and proficiency floor, and why."""

    urgency: Urgency
    min_proficiency: int
    urgency_reasons: tuple[str, ...] = field(default=())
    proficiency_reasons: tuple[str, ...] = field(default=())
    requested: Urgency = Urgency.NORMAL

    def explain(self) -> str:
        """One line for GetHandoff and the log: what was decided and why."""
        asked = "" if self.urgency == self.requested else f" (asked {self.requested.name})"
        why = "; ".join(self.urgency_reasons) or "as asked"
        line = f"urgency {self.urgency.name}{asked}: {why}"
        if self.proficiency_reasons:
            line += (
                f"; min proficiency {self.min_proficiency}: {'; '.join(self.proficiency_reasons)}"
            )
        return line


def _up(urgency: Urgency, levels: int = 1) -> Urgency:
    return Urgency(min(Urgency.CRITICAL, urgency + levels))


def _amount(value: float) -> str:
    return f"{value:g}"


def assess(
    requested: Urgency,
    signals: Signals,
    policy: RoutingPolicy,
    rules: RiskRules = RiskRules(),
    *,
    reason: HandoffReason = HandoffReason.UNSPECIFIED,
) -> RiskDecision:
    """The urgency and proficiency floor a handoff gets from its signals and its type's
    policy. Rules raise, never lower: the bot's own urgency is the least it gets."""
    urgency = requested
    reasons: list[str] = []

    def at_least(level: Urgency, why: str) -> None:
        nonlocal urgency
        if level > urgency:
            urgency = level
            reasons.append(why)

    def raise_one(why: str) -> None:
        nonlocal urgency
        if urgency < Urgency.CRITICAL:
            urgency = _up(urgency)
            reasons.append(why)

    amount = signals.disputed_amount
    if signals.suspected_fraud and signals.distress:
        at_least(Urgency.CRITICAL, "suspected fraud and distress")
    elif signals.suspected_fraud:
        at_least(Urgency.HIGH, "suspected fraud")
    if amount is not None and amount >= rules.very_large_amount:
        level = Urgency.CRITICAL if signals.distress else Urgency.HIGH
        why = f"disputed amount over {_amount(rules.very_large_amount)}"
        at_least(level, f"distress and {why}" if signals.distress else why)
    elif signals.distress and amount is not None and amount >= rules.large_amount:
        at_least(Urgency.HIGH, f"distress and disputed amount over {_amount(rules.large_amount)}")
    elif signals.distress:
        raise_one("distress")
    if signals.sentiment is not None and signals.sentiment <= rules.negative_sentiment:
        raise_one(f"sentiment {signals.sentiment:+.1f}")
    if reason is HandoffReason.REPEATED_CONTACT:
        raise_one("repeated contact")
    valued = signals.tier in (CustomerTier.PREMIUM, CustomerTier.VIP) or (
        signals.tenure_days is not None and signals.tenure_days >= rules.long_tenure_days
    )
    if valued and urgency < Urgency.HIGH:
        what = signals.tier.name if signals.tier is not CustomerTier.UNSPECIFIED else ""
        raise_one(f"{what} customer".strip() if what else "long-standing customer")
    if policy.risk_class is RiskClass.HIGH:
        at_least(Urgency.NORMAL, f"{policy.interaction_type} is high-risk")

    floor = policy.min_proficiency
    floor_reasons = [f"policy floor {floor}"] if floor > 1 else []

    def floor_at_least(level: int, why: str) -> None:
        nonlocal floor
        level = min(level, MAX_PROFICIENCY)
        if level > floor:
            floor = level
            floor_reasons.append(why)

    if signals.suspected_fraud:
        floor_at_least(4, "suspected fraud")
    if (
        reason is HandoffReason.LOW_CONFIDENCE
        and signals.bot_confidence is not None
        and signals.bot_confidence < rules.low_confidence
    ):
        floor_at_least(floor + 1, f"bot confidence {signals.bot_confidence:.2f}")
    if urgency is Urgency.CRITICAL and policy.risk_class is RiskClass.HIGH:
        floor_at_least(4, "critical and high-risk")
    return RiskDecision(urgency, floor, tuple(reasons), tuple(floor_reasons), requested)


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """A handoff request as it is routed: with its effective urgency and skills, its
    deadline (the policy's target, scaled by urgency), its wait plan, and why."""

    request: HandoffRequest
    deadline: datetime
    plan: WaitPlan
    explanation: str
    agent_order: AgentOrder = AgentOrder.MOST_PROFICIENT
    risk_class: RiskClass = RiskClass.MEDIUM
    quality_ranked: bool = True


def decide(
    request: HandoffRequest,
    choice: PolicyChoice,
    targets: Mapping[Urgency, timedelta],
    now: datetime,
    rules: RiskRules = RiskRules(),
    *,
    known_agent_online: bool = False,
    others_online: bool = True,
) -> RoutingDecision:
    """How a new handoff is routed: its type's policy (or the fallback, said so), its
    signals' urgency and proficiency floor, the policy's default skills where the bot named
    none, and what happens while it waits (relaxation, expiry, offer timeout, the wait for
    its known agent if that agent is online, the experts kept back while `others_online`:
    agents below the policy's expert level who could take it are online). The deadline is
    the policy's target scaled as `targets` scale NORMAL to the effective urgency (with the
    default targets: CRITICAL a quarter, LOW two and a half times)."""
    policy = choice.policy
    decision = assess(request.urgency, request.signals, policy, rules, reason=request.reason)
    floored = replace(policy, min_proficiency=decision.min_proficiency)
    optional = [s.skill for s in request.required_skills if s.optional]
    skills = requirements_at(floored, request.required_skills, optional, timedelta(0)).skills
    target = policy.target * (targets[decision.urgency] / targets[Urgency.NORMAL])
    name = f"policy {policy.interaction_type}" + (" (fallback)" if choice.fallback else "")
    parts = [name, decision.explain()]
    if policy.agent_order is AgentOrder.LEAST_EXPERT:
        parts.append("least expert agent first")
    experts_from = None
    if policy.expert_level is not None and policy.expert_delay > timedelta(0):
        if others_online:
            experts_from = now + policy.expert_delay
            parts.append(f"{experts(policy.expert_level)} only after {span(policy.expert_delay)}")
        else:  # nobody to keep them free for: waiting would only keep the customer waiting
            parts.append(f"{experts(policy.expert_level)} not kept back: no other agent online")
    preferred_until = None
    known = request.preferred_agent_id
    if known is not None:
        if policy.known_agent_wait <= timedelta(0):
            parts.append(f"known agent {known} not waited for: the policy waits for none")
        elif known_agent_online:
            preferred_until = now + policy.known_agent_wait
            parts.append(f"waits up to {span(policy.known_agent_wait)} for known agent {known}")
        else:
            parts.append(f"known agent {known} not waited for: offline")
    plan = WaitPlan(
        expires_at=now + policy.max_wait,
        offer_timeout=policy.offer_timeout,
        steps=plan_relaxation(floored, request.required_skills, optional),
        preferred_agent_id=known,
        preferred_until=preferred_until,
        expert_level=policy.expert_level,
        experts_from=experts_from,
    )
    return RoutingDecision(
        replace(request, urgency=decision.urgency, required_skills=skills),
        now + target,
        plan,
        "; ".join(parts),
        policy.agent_order,
        policy.risk_class,
        policy.quality_ranking,
    )
