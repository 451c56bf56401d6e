"""Routing policies: how each interaction type is routed, by what it risks.

Routing by topic alone fails the customers who matter most (DESIGN.md 1): two minutes is fine
for an order lookup and intolerable for fraud. A `RoutingPolicy` says, for one interaction
type, how fast an agent should have it (`target`), who may take it (default required skills
and a minimum proficiency), how much failure costs (`risk_class`), how long an offer waits for
an answer, how long the customer may wait at most before the handoff expires, how the
requirements widen while it waits (`relaxation`, like bullseye rings), how long it waits for
a known agent, which agents try first (`agent_order`), whether experts are kept from it for a
while (`expert_level`, `expert_delay`: the delay of Amazon Connect's routing profiles, or
trunk reservation), and whether agents' quality ranks them.

`PolicyBook` holds the policies in force: built-in defaults for the six interaction types of
DESIGN.md, replaced type by type by a policy file or PoolService, and a fallback policy for
every other type, which says it is one. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from humanline.domain.model import (
    AgentOrder,
    Handoff,
    PlannedStep,
    RiskClass,
    SkillRequirement,
    WaitPlan,
)
from humanline.domain.validation import MAX_PROFICIENCY, MIN_PROFICIENCY

FALLBACK_TYPE = "default"  # the policy of every interaction type without one of its own


@dataclass(frozen=True, slots=True)
class RelaxationStep:
    """After the handoff has waited `after`, its requirements widen: every required skill's
    minimum proficiency drops to at most `min_proficiency` (None: unchanged), and with
    `drop_optional` the skills the bot marked optional are no longer required."""

    after: timedelta
    min_proficiency: int | None = None
    drop_optional: bool = False


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """How one interaction type is routed."""

    interaction_type: str
    target: timedelta  # time-to-agent target at NORMAL urgency
    required_skills: tuple[SkillRequirement, ...] = ()  # when the bot names none
    min_proficiency: int = MIN_PROFICIENCY  # floor for every required skill
    risk_class: RiskClass = RiskClass.MEDIUM
    offer_timeout: timedelta | None = None  # None: the server's setting
    max_wait: timedelta = timedelta(minutes=15)
    relaxation: tuple[RelaxationStep, ...] = ()
    quality_ranking: bool = True
    known_agent_wait: timedelta = timedelta(seconds=30)
    agent_order: AgentOrder = AgentOrder.MOST_PROFICIENT
    # Experts (agents whose best skill is at `expert_level` or above) are kept for the work
    # only they can do: they may take this type only once it has waited `expert_delay`.
    expert_level: int | None = None
    expert_delay: timedelta = timedelta(0)

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong with this policy, as (field, description) pairs; empty when valid."""
        found: list[tuple[str, str]] = []
        positive = {
            "target": self.target,
            "offer_timeout": self.offer_timeout,
            "max_wait": self.max_wait,
        }
        for name, value in positive.items():
            if value is not None and value <= timedelta(0):
                found.append((name, "must be positive"))
        if self.known_agent_wait < timedelta(0):
            found.append(("known_agent_wait", "must not be negative"))
        if self.max_wait < self.target:
            found.append(("max_wait", "must not be shorter than the target"))
        levels = f"must be between {MIN_PROFICIENCY} and {MAX_PROFICIENCY}"
        if not MIN_PROFICIENCY <= self.min_proficiency <= MAX_PROFICIENCY:
            found.append(("min_proficiency", levels))
        if self.expert_level is not None:
            if not MIN_PROFICIENCY <= self.expert_level <= MAX_PROFICIENCY:
                found.append(("expert_level", levels))
            if self.expert_delay <= timedelta(0):
                found.append(("expert_delay", "must be positive when expert_level is set"))
            elif self.expert_delay >= self.max_wait:
                found.append(("expert_delay", "must be shorter than max_wait"))
        elif self.expert_delay != timedelta(0):
            found.append(("expert_delay", "needs expert_level"))
        previous = timedelta(0)
        for i, step in enumerate(self.relaxation):
            if step.after <= previous:
                found.append(
                    (f"relaxation[{i}].after", "must be positive and later than the step before")
                )
            if step.after >= self.max_wait:
                found.append((f"relaxation[{i}].after", "must come before max_wait"))
            if step.min_proficiency is not None and not (
                MIN_PROFICIENCY <= step.min_proficiency <= MAX_PROFICIENCY
            ):
                found.append((f"relaxation[{i}].min_proficiency", levels))
            if step.min_proficiency is None and not step.drop_optional:
                found.append(
                    (f"relaxation[{i}]", "must lower min_proficiency or drop optional skills")
                )
            previous = step.after
        return found


@dataclass(frozen=True, slots=True)
class Requirements:
    """What an agent must have to be offered a handoff, at one moment of its wait."""

    skills: tuple[SkillRequirement, ...]
    step: int  # relaxation steps applied (0: none)


def requirements_at(
    policy: RoutingPolicy,
    required: Iterable[SkillRequirement],
    optional: Iterable[str],
    waited: timedelta,
) -> Requirements:
    """The skills a handoff requires after waiting `waited`: the bot's (or the policy's
    defaults), each at least the policy's minimum proficiency, widened by every relaxation
    step whose time has come. `optional` names the skills the bot could do without."""
    skills = tuple(required) or policy.required_skills
    skills = tuple(
        replace(s, min_proficiency=max(s.min_proficiency, policy.min_proficiency)) for s in skills
    )
    dropped: frozenset[str] = frozenset()
    step = 0
    for i, relax in enumerate(policy.relaxation):
        if waited < relax.after:
            break
        step = i + 1
        if relax.min_proficiency is not None:
            floor = relax.min_proficiency
            skills = tuple(
                replace(s, min_proficiency=min(s.min_proficiency, floor)) for s in skills
            )
        if relax.drop_optional:
            dropped = frozenset(optional)
    return Requirements(tuple(s for s in skills if s.skill not in dropped), step)


def span(value: timedelta) -> str:
    """A wait as people say it: "45s", "2m", "1m30s", "1h5m"."""
    seconds = round(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def _describe(skills: tuple[SkillRequirement, ...]) -> str:
    return ", ".join(f"{s.skill} {s.min_proficiency}+" for s in skills) or "any agent"


def experts(level: int) -> str:
    """Who a policy's expert level keeps back, as the routing reasons say it."""
    return f"experts (best skill {level}+)"


def plan_relaxation(
    policy: RoutingPolicy, required: Iterable[SkillRequirement], optional: Iterable[str]
) -> tuple[PlannedStep, ...]:
    """The relaxation steps of one handoff: the requirements after each of the policy's
    steps, where they change anything, each with what it changes."""
    required, optional = tuple(required), frozenset(optional)
    current = requirements_at(policy, required, optional, timedelta(0)).skills
    steps: list[PlannedStep] = []
    for relax in policy.relaxation:
        skills = requirements_at(policy, required, optional, relax.after).skills
        if skills != current:
            steps.append(PlannedStep(relax.after, skills, _describe(skills)))
            current = skills
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class Review:
    """What a waiting handoff's plan does at one moment: the plan afterwards, the
    requirements if a relaxation step applied (None: unchanged), what changed, and whether
    its maximum wait is over."""

    plan: WaitPlan
    skills: tuple[SkillRequirement, ...] | None
    notes: tuple[str, ...]
    expired: bool


def review(handoff: Handoff, now: datetime) -> Review:
    """Applies what is due of a queued handoff's wait plan at `now`: every relaxation step
    whose time has come, the end of the wait for its known agent and of the experts'
    reserve, its expiry."""
    plan = handoff.plan
    skills = None
    notes: list[str] = []
    step = plan.step
    while step < len(plan.steps) and handoff.created_at + plan.steps[step].after <= now:
        planned = plan.steps[step]
        step += 1
        skills = planned.skills
        notes.append(f"relaxed after {span(planned.after)} (step {step}): {planned.note}")
    preferred_until = plan.preferred_until
    if preferred_until is not None and now >= preferred_until:
        preferred_until = None
        notes.append(f"stopped waiting for known agent {plan.preferred_agent_id}")
    experts_from = plan.experts_from
    if experts_from is not None and now >= experts_from:
        level = plan.expert_level or MIN_PROFICIENCY
        after = span(experts_from - handoff.created_at)
        notes.append(f"{experts(level)} may take it after {after}")
        experts_from = None
    expired = plan.expires_at is not None and now >= plan.expires_at
    changed = replace(plan, step=step, preferred_until=preferred_until, experts_from=experts_from)
    return Review(changed, skills, tuple(notes), expired)


def expiry_reason(handoff: Handoff, eligible_online: int, now: datetime) -> str:
    """Why a handoff expired, for the bot (which may offer the customer a callback) and ops."""
    if eligible_online == 0:
        language = handoff.request.language
        speaking = f" speaking {language}" if language else ""
        skills = handoff.request.required_skills
        who = f" with {_describe(skills)}" if skills else ""
        why = f"no agent{speaking}{who} was online"
    else:
        agents = "agent was" if eligible_online == 1 else "agents were"
        why = f"{eligible_online} eligible {agents} online, none free"
    return f"maximum wait over after {span(now - handoff.created_at)}: {why}"


def next_relaxation(policy: RoutingPolicy, waited: timedelta) -> timedelta | None:
    """When (as a wait) the next relaxation step applies; None when none is left."""
    for relax in policy.relaxation:
        if waited < relax.after:
            return relax.after
    return None


def _skills(**minimums: int) -> tuple[SkillRequirement, ...]:
    return tuple(SkillRequirement(skill, level) for skill, level in minimums.items())


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


# The six interaction types of DESIGN.md 1. Low-risk, rule-bound types wait longer and take any
# agent with the skill, the least expert first, and experts (best skill 4+) only once they
# have waited a while, so that the experts stay free for the risky kinds; high-risk ones get
# short targets and the most proficient agents, widening slowly and never below a safe floor.
# Billing disputes keep the top experts (5: in practice the fraud team, whose billing is often
# good enough once the floor widens) for a while too, so that fraud finds one free.
DEFAULT_POLICIES: tuple[RoutingPolicy, ...] = (
    RoutingPolicy(
        "order_lookup",
        target=_seconds(300),
        required_skills=_skills(orders=1),
        risk_class=RiskClass.LOW,
        offer_timeout=_seconds(20),
        max_wait=_seconds(1800),
        quality_ranking=False,
        agent_order=AgentOrder.LEAST_EXPERT,
        expert_level=4,
        expert_delay=_seconds(120),
    ),
    RoutingPolicy(
        "standard_refund",
        target=_seconds(180),
        required_skills=_skills(billing=1),
        risk_class=RiskClass.LOW,
        offer_timeout=_seconds(20),
        max_wait=_seconds(1200),
        quality_ranking=False,
        agent_order=AgentOrder.LEAST_EXPERT,
        expert_level=4,
        expert_delay=_seconds(60),
    ),
    RoutingPolicy(
        "billing_dispute",
        target=_seconds(45),
        required_skills=_skills(billing=3),
        min_proficiency=4,
        risk_class=RiskClass.HIGH,
        max_wait=_seconds(600),
        relaxation=(
            # Widened before the target passes: a proficient agent soon beats the most
            # proficient late.
            RelaxationStep(_seconds(30), min_proficiency=3),
            RelaxationStep(_seconds(120), drop_optional=True),
        ),
        expert_level=5,
        expert_delay=_seconds(120),
    ),
    RoutingPolicy(
        "policy_edge_case",
        target=_seconds(90),
        required_skills=_skills(policy=3),
        risk_class=RiskClass.MEDIUM,
        max_wait=_seconds(900),
        relaxation=(RelaxationStep(_seconds(120), min_proficiency=2, drop_optional=True),),
    ),
    RoutingPolicy(
        "novel_product_question",
        target=_seconds(90),
        required_skills=_skills(product=2),
        min_proficiency=3,
        risk_class=RiskClass.HIGH,
        max_wait=_seconds(900),
        relaxation=(RelaxationStep(_seconds(90), min_proficiency=2, drop_optional=True),),
    ),
    RoutingPolicy(
        "fraud",
        target=_seconds(30),
        required_skills=_skills(fraud=4),
        min_proficiency=4,
        risk_class=RiskClass.HIGH,
        offer_timeout=_seconds(10),
        max_wait=_seconds(300),
        relaxation=(RelaxationStep(_seconds(60), min_proficiency=3),),
        known_agent_wait=timedelta(0),
    ),
)

DEFAULT_FALLBACK = RoutingPolicy(FALLBACK_TYPE, target=_seconds(120))

# Every built-in policy by interaction type, the fallback under `default`.
BUILT_IN_POLICIES: Mapping[str, RoutingPolicy] = {
    p.interaction_type: p for p in (*DEFAULT_POLICIES, DEFAULT_FALLBACK)
}


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """The policy a handoff is routed by, and whether it is the fallback for its type."""

    policy: RoutingPolicy
    fallback: bool


class PolicyBook:
    """The routing policies in force, by interaction type, with a fallback for the rest."""

    def __init__(self, policies: Iterable[RoutingPolicy] = DEFAULT_POLICIES) -> None:
        self._by_type: dict[str, RoutingPolicy] = {}
        self._fallback = DEFAULT_FALLBACK
        for policy in policies:
            self.put(policy)

    def put(self, policy: RoutingPolicy) -> None:
        """Adds or replaces the policy of `policy.interaction_type` (`default`: the fallback)."""
        if policy.interaction_type == FALLBACK_TYPE:
            self._fallback = policy
        else:
            self._by_type[policy.interaction_type] = policy

    def remove(self, interaction_type: str) -> bool:
        """Drops a type's own policy (the fallback goes back to the built-in one); whether
        there was one."""
        if interaction_type == FALLBACK_TYPE:
            existed = self._fallback != DEFAULT_FALLBACK
            self._fallback = DEFAULT_FALLBACK
            return existed
        return self._by_type.pop(interaction_type, None) is not None

    def choose(self, interaction_type: str) -> PolicyChoice:
        """The policy for `interaction_type`, or the fallback, said to be one."""
        policy = self._by_type.get(interaction_type)
        if policy is None:
            return PolicyChoice(self._fallback, fallback=True)
        return PolicyChoice(policy, fallback=False)

    def get(self, interaction_type: str) -> RoutingPolicy | None:
        """A type's own policy (the fallback for `default`), or None."""
        if interaction_type == FALLBACK_TYPE:
            return self._fallback
        return self._by_type.get(interaction_type)

    def all(self) -> list[RoutingPolicy]:
        """Every policy, the fallback first, then by interaction type."""
        return [self._fallback, *(self._by_type[t] for t in sorted(self._by_type))]
