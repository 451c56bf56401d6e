"""Entities and value types of the dispatch domain: agents, handoffs, offers and sessions.

Everything here is plain data: frozen dataclasses and string enums, no I/O. State changes are
made by the service layer through the store; the rules that decide them live in
`humanline.domain.rules` and `humanline.domain.matching`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import uuid6


def new_id() -> str:
    """An id for a new handoff or offer: a UUIDv7 (RFC 9562), whose first 48 bits are the
    time in milliseconds, increasing within one process. Rows made about the same time sit
    together in every index keyed by these ids (the primary keys, a handoff's skills and
    offers), so that a write touches the few pages at their newest end, however large the
    history; a random id (UUIDv4) sends each write to a random page of an index as large
    as the history."""
    return str(uuid6.uuid7())


class Urgency(enum.IntEnum):
    """How soon a customer needs a human; higher is more urgent."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4


class HandoffState(enum.StrEnum):
    """Where a handoff is in its lifecycle."""

    QUEUED = "QUEUED"
    OFFERED = "OFFERED"
    ASSIGNED = "ASSIGNED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def waiting(self) -> bool:
        """True while the handoff waits for an agent to accept it."""
        return self in (HandoffState.QUEUED, HandoffState.OFFERED)

    @property
    def terminal(self) -> bool:
        """True once nothing can happen to the handoff any more."""
        return self in (HandoffState.COMPLETED, HandoffState.CANCELLED, HandoffState.EXPIRED)


class AgentOrder(enum.StrEnum):
    """Which eligible agent a handoff is offered to first."""

    # The most proficient on its skills: where the quality of the answer matters most.
    MOST_PROFICIENT = "MOST_PROFICIENT"
    # The least expert who qualifies (the lowest best skill level, in any skill), then the
    # least proficient on its skills: routine work, keeping the experts free for the risky
    # kinds (as TaskRouter's `order_by worker.level ASC`, over every skill).
    LEAST_EXPERT = "LEAST_EXPERT"


class HandoffReason(enum.StrEnum):
    """Why the bot handed the conversation over."""

    UNSPECIFIED = "UNSPECIFIED"
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    POLICY_EXCEPTION = "POLICY_EXCEPTION"
    TOOL_FAILURE = "TOOL_FAILURE"
    REPEATED_CONTACT = "REPEATED_CONTACT"
    OTHER = "OTHER"


class Outcome(enum.StrEnum):
    """How an agent ended an interaction."""

    RESOLVED = "RESOLVED"
    UNRESOLVED = "UNRESOLVED"
    TRANSFERRED = "TRANSFERRED"
    FOLLOW_UP_NEEDED = "FOLLOW_UP_NEEDED"


class RiskClass(enum.Enum):
    """What a failed interaction of a type costs (its routing policy says)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AgentStatus(enum.StrEnum):
    """The availability stored for an agent. OFFLINE exactly when it has no live session."""

    OFFLINE = "OFFLINE"
    AVAILABLE = "AVAILABLE"
    AWAY = "AWAY"


class AgentState(enum.StrEnum):
    """What an agent is doing as the pool sees it; derived from status, connection and load."""

    OFFLINE = "OFFLINE"
    AVAILABLE = "AVAILABLE"
    AWAY = "AWAY"
    BUSY = "BUSY"
    RECONNECTING = "RECONNECTING"


class OfferState(enum.StrEnum):
    """An offer's lifecycle. An ACCEPTED offer is a live interaction."""

    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    RESCINDED = "RESCINDED"
    COMPLETED = "COMPLETED"
    REVOKED = "REVOKED"


class DeclineReason(enum.StrEnum):
    """Why an agent declined an offer."""

    UNSPECIFIED = "UNSPECIFIED"
    BUSY = "BUSY"
    NOT_QUALIFIED = "NOT_QUALIFIED"
    LANGUAGE = "LANGUAGE"
    ENDING_SHIFT = "ENDING_SHIFT"
    OTHER = "OTHER"


class RescindReason(enum.StrEnum):
    """Why an offer was taken back from an agent."""

    EXPIRED = "EXPIRED"
    DECLINED = "DECLINED"
    HANDOFF_CANCELLED = "HANDOFF_CANCELLED"
    SESSION_ENDED = "SESSION_ENDED"
    AGENT_AWAY = "AGENT_AWAY"


class StatusChangeReason(enum.StrEnum):
    """Why an agent's status changed."""

    AGENT_REQUEST = "AGENT_REQUEST"
    MISSED_OFFERS = "MISSED_OFFERS"


class SessionState(enum.StrEnum):
    """An agent session: its stream is live, dropped (within grace) or the session is over."""

    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    ENDED = "ENDED"


class SessionEndReason(enum.StrEnum):
    """Why a session ended."""

    LOGGED_OUT = "LOGGED_OUT"
    GRACE_EXPIRED = "GRACE_EXPIRED"
    REPLACED = "REPLACED"


@dataclass(frozen=True, slots=True)
class SkillRequirement:
    """A skill a handoff needs, at `min_proficiency` (1-5) or better. An `optional` one is
    required until a relaxation step of the handoff's routing policy drops it."""

    skill: str
    min_proficiency: int
    optional: bool = False


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """What ops set about an agent."""

    display_name: str
    skills: Mapping[str, int]
    languages: frozenset[str]
    capacity: int


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """A change to an agent's profile: fields left None stay as they are."""

    display_name: str | None = None
    skills: Mapping[str, int] | None = None
    languages: frozenset[str] | None = None
    capacity: int | None = None

    def apply(self, profile: AgentProfile) -> AgentProfile:
        """The profile with this change made."""
        return AgentProfile(
            display_name=profile.display_name if self.display_name is None else self.display_name,
            skills=profile.skills if self.skills is None else self.skills,
            languages=profile.languages if self.languages is None else self.languages,
            capacity=profile.capacity if self.capacity is None else self.capacity,
        )


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent with its profile and its live dispatch state."""

    id: str
    profile: AgentProfile
    status: AgentStatus
    connected: bool
    load: int
    consecutive_misses: int
    last_assigned_at: datetime | None
    created_at: datetime
    updated_at: datetime
    status_reason: StatusChangeReason = StatusChangeReason.AGENT_REQUEST

    @property
    def state(self) -> AgentState:
        """The state ops see; BUSY and RECONNECTING are derived, not stored."""
        if self.status is AgentStatus.OFFLINE:
            return AgentState.OFFLINE
        if not self.connected:
            return AgentState.RECONNECTING
        if self.status is AgentStatus.AWAY:
            return AgentState.AWAY
        if self.load >= self.profile.capacity:
            return AgentState.BUSY
        return AgentState.AVAILABLE

    @property
    def expertise(self) -> int:
        """Its best proficiency in any skill (0 without skills): how much of an expert it is."""
        return max(self.profile.skills.values(), default=0)

    @property
    def free_capacity(self) -> int:
        """Slots left for new offers (never negative)."""
        return max(0, self.profile.capacity - self.load)


class CustomerTier(enum.StrEnum):
    """How much the customer's business weighs (the bot's CRM says)."""

    UNSPECIFIED = "UNSPECIFIED"
    STANDARD = "STANDARD"
    PREMIUM = "PREMIUM"
    VIP = "VIP"


@dataclass(frozen=True, slots=True)
class Signals:
    """What the bot tells about the conversation; None: it does not know."""

    sentiment: float | None = None  # -1 (hostile, despairing) .. 1 (happy)
    distress: bool = False
    suspected_fraud: bool = False
    disputed_amount: float | None = None  # in the account's currency
    tier: CustomerTier = CustomerTier.UNSPECIFIED
    tenure_days: int | None = None
    bot_confidence: float | None = None  # 0 .. 1


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """What a bot asks for: the content behind an idempotency key."""

    request_id: str
    conversation_id: str
    customer_id: str
    interaction_type: str
    required_skills: tuple[SkillRequirement, ...]
    language: str | None
    urgency: Urgency
    summary: str
    reason: HandoffReason
    signals: Signals = Signals()
    preferred_agent_id: str | None = None  # the customer's last agent, waited for a while

    def fingerprint(self) -> str:
        """A digest of everything but the request id, to tell a retry from a reused key."""
        content: dict[str, object] = {
            "conversation_id": self.conversation_id,
            "customer_id": self.customer_id,
            "interaction_type": self.interaction_type,
            "required_skills": sorted(
                # The flag only where set: the digests of handoffs made before stay the same.
                (r.skill, r.min_proficiency, True) if r.optional else (r.skill, r.min_proficiency)
                for r in self.required_skills
            ),
            "language": self.language,
            "urgency": int(self.urgency),
            "summary": self.summary,
            "reason": str(self.reason),
        }
        if self.signals != Signals():
            # Absent without signals: the digests of handoffs made before stay the same.
            content["signals"] = {
                "sentiment": self.signals.sentiment,
                "distress": self.signals.distress,
                "suspected_fraud": self.signals.suspected_fraud,
                "disputed_amount": self.signals.disputed_amount,
                "tier": str(self.signals.tier),
                "tenure_days": self.signals.tenure_days,
                "bot_confidence": self.signals.bot_confidence,
            }
        if self.preferred_agent_id is not None:
            content["preferred_agent_id"] = self.preferred_agent_id
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Completion:
    """How an agent ended an interaction."""

    outcome: Outcome
    disposition_code: str
    notes: str

    def fingerprint(self) -> str:
        """A digest of the completion, to tell a retry from a conflicting second completion."""
        canonical = json.dumps([str(self.outcome), self.disposition_code, self.notes])
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Feedback:
    """What the customer made of a completed handoff, as the bot reports it minutes to days
    later: a CSAT rating of 1 to 5, reason tags, and whether they contacted again about the
    same issue."""

    csat: int
    reason_tags: tuple[str, ...] = ()
    contacted_again: bool = False

    def fingerprint(self) -> str:
        """A digest, to tell a retry from a conflicting second report."""
        canonical = json.dumps([self.csat, sorted(self.reason_tags), self.contacted_again])
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """A relaxation step of a handoff: once it has waited `after`, `skills` are required."""

    after: timedelta
    skills: tuple[SkillRequirement, ...]
    note: str  # what the step changes, for the routing explanation: "min proficiency 3"


@dataclass(frozen=True, slots=True)
class WaitPlan:
    """What happens to a handoff while it waits, fixed from its type's routing policy when
    it is queued (a later change of the policy leaves queued handoffs as they were).

    - `expires_at`: the end of its maximum wait; still queued then, it ends EXPIRED.
    - `offer_timeout`: how long each offer waits for the agent's answer (None: the server's).
    - `steps`: relaxation; `step` of them are applied.
    - `preferred_agent_id`: the customer's known agent; until `preferred_until` only that
      agent may be offered the handoff (None: the wait for it is over or never began).
    - `expert_level`, `experts_from`: agents whose best skill is at `expert_level` or above
      (experts, kept for work only they can do) may not take it before `experts_from`
      (None: they may).
    """

    expires_at: datetime | None = None
    offer_timeout: timedelta | None = None
    steps: tuple[PlannedStep, ...] = ()
    step: int = 0
    preferred_agent_id: str | None = None
    preferred_until: datetime | None = None
    expert_level: int | None = None
    experts_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class Handoff:
    """A request for a human and everything that happened to it.

    `agent_id` and `offer_id` name the agent and offer currently involved: the pending offer
    while OFFERED, the accepted offer (the interaction) while ASSIGNED and after COMPLETED.
    """

    id: str
    request: HandoffRequest
    fingerprint: str
    state: HandoffState
    created_at: datetime
    deadline: datetime
    requeue_count: int
    agent_id: str | None
    offer_id: str | None
    assigned_at: datetime | None
    ended_at: datetime | None
    completion: Completion | None
    bot_id: str = ""  # the bot that requested it; "" on a server without authentication
    routing: str = ""  # why it is routed as it is (policy, urgency, floor and reasons)
    plan: WaitPlan = WaitPlan()
    end_reason: str = ""  # why it expired
    agent_order: AgentOrder = AgentOrder.MOST_PROFICIENT
    feedback: Feedback | None = None
    feedback_at: datetime | None = None
    risk_class: RiskClass | None = None  # its policy's when it was requested (None: before)
    quality_ranked: bool = False  # its policy ranks eligible agents by quality

    def reserved_for(self, now: datetime) -> str | None:
        """The only agent it may be offered to now (its known agent, while waited for)."""
        plan = self.plan
        if plan.preferred_until is not None and now < plan.preferred_until:
            return plan.preferred_agent_id
        return None

    def closed_to(self, expertise: int, now: datetime) -> bool:
        """Is it kept at `now` from an agent whose best skill level is `expertise`? Its
        policy may keep experts for the work only they can do until it has waited a while."""
        plan = self.plan
        return (
            plan.experts_from is not None
            and plan.expert_level is not None
            and now < plan.experts_from
            and expertise >= plan.expert_level
        )

    @property
    def review_at(self) -> datetime | None:
        """When its wait plan next changes something: a relaxation step, the end of the wait
        for its known agent or of the experts' reserve, or its expiry; None when nothing is
        left to happen."""
        plan = self.plan
        moments = [plan.expires_at, plan.preferred_until, plan.experts_from]
        if plan.step < len(plan.steps):
            moments.append(self.created_at + plan.steps[plan.step].after)
        return min((m for m in moments if m is not None), default=None)


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer of one handoff to one agent; once ACCEPTED it is the agent's interaction."""

    id: str
    handoff_id: str
    agent_id: str
    state: OfferState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decline_reason: DeclineReason | None
    rescind_reason: RescindReason | None
    ranking: str = ""  # why this agent got it: proficiency and, where it ranks, quality


@dataclass(frozen=True, slots=True)
class Interaction:
    """An accepted offer together with its handoff: the agent's view of its work."""

    offer: Offer
    handoff: Handoff

    @property
    def id(self) -> str:
        """The interaction's id is the accepted offer's id (the fencing token)."""
        return self.offer.id

    @property
    def handle_time(self) -> timedelta | None:
        """Accept to completion, once completed."""
        if self.offer.state is not OfferState.COMPLETED:
            return None
        if self.handoff.ended_at is None or self.offer.decided_at is None:
            return None
        return self.handoff.ended_at - self.offer.decided_at


@dataclass(frozen=True, slots=True)
class Session:
    """An agent's login: alive while its stream is, kept through a grace period after a drop.

    `connection_id` names the stream that holds the session now; a resume or take-over gives
    it a new one, so the drop of an older stream cannot disconnect a newer one.
    """

    id: str
    agent_id: str
    state: SessionState
    token_hash: str
    replica_id: str
    connection_id: str
    created_at: datetime
    disconnected_at: datetime | None
    grace_expires_at: datetime | None
    ended_at: datetime | None
    end_reason: SessionEndReason | None
