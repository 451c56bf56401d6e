"""The matching core: who may take which handoff, in which order, and who gets it.

Pure functions of handoffs, agents, exclusions and nothing else. The store narrows the
candidates with SQL for speed (`AgentRepository.candidates_for`,
`HandoffRepository.queued_for_agent`); tests hold that SQL to `is_eligible` here, which is
the specification.

Rules:
- Eligible agent: AVAILABLE (connected, status available, below capacity), every required
  skill at or above its minimum proficiency, the handoff's language if it names one, it
  has not declined or missed this handoff, the handoff is not held for another agent
  (its known agent, for a while: `Handoff.reserved_for`), and, unless held for this very
  agent, it is not kept from the agent's level of expertise (experts reserved for other
  work, for a while: `Handoff.closed_to`).
- Queue order: earliest deadline (enqueue time plus the urgency's target) first, then
  earliest enqueue, then id; so urgency wins and age still counts.
- Agent choice: the best proficiency on the required skills (their sum); for a handoff routed
  `LEAST_EXPERT` (routine work, keeping experts free), the agent whose best skill level in
  any skill is lowest, then the least proficiency on the required skills; then the longest
  idle since its last assignment (never assigned first), then id.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime

from humanline.domain.model import Agent, AgentOrder, AgentState, Handoff, HandoffState

_NEVER = datetime.min.replace(tzinfo=UTC)


def queue_key(handoff: Handoff) -> tuple[datetime, datetime, str]:
    """Sort key of the queue: earliest deadline first."""
    return (handoff.deadline, handoff.created_at, handoff.id)


def has_skills(agent: Agent, handoff: Handoff) -> bool:
    """Every required skill at or above its minimum, and the language if one is named."""
    language = handoff.request.language
    if language is not None and language not in agent.profile.languages:
        return False
    skills = agent.profile.skills
    return all(skills.get(r.skill, 0) >= r.min_proficiency for r in handoff.request.required_skills)


def is_eligible(
    agent: Agent, handoff: Handoff, excluded: Collection[str] = (), now: datetime | None = None
) -> bool:
    """May `agent` be offered `handoff` at `now`? `excluded` holds agents that declined or
    missed it. Without `now`, holds for a known agent and experts' reserves are not
    considered."""
    return (
        handoff.state is HandoffState.QUEUED
        and agent.state is AgentState.AVAILABLE
        and agent.id not in excluded
        and (now is None or _open_to(agent, handoff, now))
        and has_skills(agent, handoff)
    )


def _open_to(agent: Agent, handoff: Handoff, now: datetime) -> bool:
    """Neither held for another agent nor keeping this agent's level back: the customer's
    known agent, while waited for, may take it whatever the experts' reserve says."""
    held_for = handoff.reserved_for(now)
    if held_for is not None:
        return held_for == agent.id
    return not handoff.closed_to(agent.expertise, now)


def can_wait_for(agent: Agent) -> bool:
    """May a handoff wait for this agent as its known agent? While it is logged in and
    working: available, or busy and so soon free. Not while away, reconnecting or offline."""
    return agent.state in (AgentState.AVAILABLE, AgentState.BUSY)


def proficiency_score(agent: Agent, handoff: Handoff) -> int:
    """Sum of the agent's proficiency over the handoff's required skills."""
    skills = agent.profile.skills
    return sum(skills.get(r.skill, 0) for r in handoff.request.required_skills)


def agent_rank_key(agent: Agent, handoff: Handoff) -> tuple[int, int, datetime, str]:
    """Sort key among eligible agents: best proficiency, then longest idle, then id; for a
    handoff routed LEAST_EXPERT, the least expert and least proficient first."""
    score = proficiency_score(agent, handoff)
    idle = agent.last_assigned_at or _NEVER
    if handoff.agent_order is AgentOrder.LEAST_EXPERT:
        return (agent.expertise, score, idle, agent.id)
    return (0, -score, idle, agent.id)


def choose_agent(
    handoff: Handoff,
    candidates: Iterable[Agent],
    excluded: Collection[str] = (),
    now: datetime | None = None,
) -> Agent | None:
    """The agent `handoff` should be offered to, or None if no candidate is eligible."""
    eligible = [a for a in candidates if is_eligible(a, handoff, excluded, now)]
    return min(eligible, key=lambda a: agent_rank_key(a, handoff), default=None)


def choose_handoff(
    agent: Agent,
    candidates: Iterable[Handoff],
    excluded: Collection[str] = (),
    now: datetime | None = None,
) -> Handoff | None:
    """The handoff `agent` should be offered next, or None. `excluded` holds handoff ids the
    agent declined or missed."""
    eligible = [h for h in candidates if h.id not in excluded and is_eligible(agent, h, now=now)]
    return min(eligible, key=queue_key, default=None)


def plan_matches(
    handoffs: Iterable[Handoff],
    agents: Iterable[Agent],
    exclusions: Mapping[str, Collection[str]] | None = None,
    now: datetime | None = None,
) -> list[tuple[str, str]]:
    """The reference assignment of a whole snapshot, as (handoff_id, agent_id) pairs.

    In queue order, each queued handoff goes to the best eligible agent that still has free
    capacity in this plan. Event-driven matching reaches the same fixed point one event at a
    time: afterwards no queued handoff has an eligible agent with free capacity.
    """
    exclusions = exclusions or {}
    pool = {a.id: a for a in agents}  # one pass: `agents` may be a one-shot iterator
    remaining = {a.id: a.free_capacity for a in pool.values()}
    plan: list[tuple[str, str]] = []
    for handoff in sorted(handoffs, key=queue_key):
        excluded = exclusions.get(handoff.id, ())
        candidates = (a for a in pool.values() if remaining[a.id] > 0)
        best = choose_agent(handoff, candidates, excluded, now)
        if best is not None:
            remaining[best.id] -= 1
            plan.append((handoff.id, best.id))
    return plan
