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
  idle since its last assignment (never assigned first), then id. Where the handoff's
  policy ranks by quality, the first `QUALITY_WINDOW` agents in that order are ranked again
  with the best quality band on its interaction type (`domain.quality.Standing`: new agents
  neutral) between the levels and the idle time (`rank`). The window bounds what a match
  reads however many agents are free, and turns with idle time, so that every agent comes
  into it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from humanline.domain.model import Agent, AgentOrder, AgentState, Handoff, HandoffState
from humanline.domain.quality import Standing

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


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible agent as the store ranks it for one handoff: with its quality on the
    handoff's interaction type where the handoff is ranked by quality (None: it is not)."""

    agent: Agent
    standing: Standing | None = None

    @property
    def band(self) -> int:
        return 0 if self.standing is None else self.standing.band


def agent_rank_key(
    agent: Agent, handoff: Handoff, band: int = 0
) -> tuple[int, int, int, datetime, str]:
    """Sort key among eligible agents: best proficiency, then the best quality `band` (0 where
    quality does not rank), then longest idle, then id; for a handoff routed LEAST_EXPERT,
    the least expert and least proficient first."""
    score = proficiency_score(agent, handoff)
    idle = agent.last_assigned_at or _NEVER
    if handoff.agent_order is AgentOrder.LEAST_EXPERT:
        return (agent.expertise, score, -band, idle, agent.id)
    return (0, -score, -band, idle, agent.id)


QUALITY_WINDOW = 32  # how many of the best by level and idle time quality chooses among


def rank(
    handoff: Handoff, candidates: Iterable[Candidate], window: int = QUALITY_WINDOW
) -> list[Candidate]:
    """Eligible candidates in the order they are offered the handoff: by level and idle
    time; where the handoff ranks by quality, the first `window` of those, ranked again with
    their quality bands after the levels."""
    ordered = sorted(candidates, key=lambda c: agent_rank_key(c.agent, handoff))
    if not handoff.quality_ranked:
        return ordered
    return sorted(ordered[:window], key=lambda c: agent_rank_key(c.agent, handoff, c.band))


def choose_agent(
    handoff: Handoff,
    candidates: Iterable[Agent | Candidate],
    excluded: Collection[str] = (),
    now: datetime | None = None,
) -> Agent | None:
    """The agent `handoff` should be offered to (the first by `rank`), or None if no
    candidate is eligible."""
    ranked = [c if isinstance(c, Candidate) else Candidate(c) for c in candidates]
    eligible = [c for c in ranked if is_eligible(c.agent, handoff, excluded, now)]
    best = rank(handoff, eligible)
    return best[0].agent if best else None


def why_chosen(candidate: Candidate, handoff: Handoff) -> str:
    """Why the best candidate got the offer, for its routing reasons: its proficiency and,
    where quality ranks, its score and what that comes from."""
    agent = candidate.agent
    skills = agent.profile.skills
    detail = [f"{r.skill} {skills.get(r.skill, 0)}" for r in handoff.request.required_skills]
    if handoff.agent_order is AgentOrder.LEAST_EXPERT:
        who = "least expert eligible agent"
        detail.insert(0, f"best skill {agent.expertise}")
    else:
        who = "most proficient eligible agent"
    why = f"{who} ({', '.join(detail) or 'no skill required'})"
    if candidate.standing is not None:
        why += f"; {candidate.standing.explain()}"
    elif not handoff.quality_ranked:
        why += "; its policy does not rank by quality"
    return why


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
