"""Builders for domain dataclasses in unit tests: sensible defaults, every field overridable.

Times come from a `FakeClock` started at `T0`; tests that need several instants advance their
own clock or add offsets to `T0`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from humanline.domain.clock import FakeClock
from humanline.domain.model import (
    Agent,
    AgentProfile,
    AgentStatus,
    Completion,
    Handoff,
    HandoffReason,
    HandoffRequest,
    HandoffState,
    Interaction,
    Offer,
    OfferState,
    Outcome,
    SkillRequirement,
    Urgency,
)
from humanline.domain.rules import DispatchPolicy

T0 = FakeClock().now()
POLICY = DispatchPolicy()

REQUEST_ID = "6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a10"
HANDOFF_ID = "0b8f5a55-2a5e-4f3f-9a77-5b2a8f0f2c11"
OFFER_ID = "a3d4b5c6-7e8f-4a0b-8c1d-2e3f4a5b6c7d"


def at(seconds: float) -> datetime:
    """`T0` plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def profile(
    *,
    display_name: str = "Agent",
    skills: Mapping[str, int] | None = None,
    languages: Iterable[str] = ("en",),
    capacity: int = 1,
) -> AgentProfile:
    """An agent profile."""
    return AgentProfile(
        display_name=display_name,
        skills=dict(skills or {}),
        languages=frozenset(languages),
        capacity=capacity,
    )


def agent(
    agent_id: str = "agent-1",
    *,
    skills: Mapping[str, int] | None = None,
    languages: Iterable[str] = ("en",),
    capacity: int = 1,
    load: int = 0,
    status: AgentStatus = AgentStatus.AVAILABLE,
    connected: bool = True,
    last_assigned_at: datetime | None = None,
    consecutive_misses: int = 0,
    display_name: str | None = None,
    created_at: datetime = T0,
) -> Agent:
    """An agent; by default available, connected, idle, capacity 1, speaking English."""
    return Agent(
        id=agent_id,
        profile=profile(
            display_name=display_name or agent_id,
            skills=skills,
            languages=languages,
            capacity=capacity,
        ),
        status=status,
        connected=connected,
        load=load,
        consecutive_misses=consecutive_misses,
        last_assigned_at=last_assigned_at,
        created_at=created_at,
        updated_at=created_at,
    )


def request(
    *,
    request_id: str = REQUEST_ID,
    conversation_id: str = "conv-1",
    customer_id: str = "cust-1",
    interaction_type: str = "billing_dispute",
    skills: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
    language: str | None = None,
    urgency: Urgency = Urgency.NORMAL,
    summary: str = "customer disputes a charge",
    reason: HandoffReason = HandoffReason.CUSTOMER_REQUEST,
) -> HandoffRequest:
    """A handoff request; `skills` maps skill to minimum proficiency (or lists pairs)."""
    pairs = skills.items() if isinstance(skills, Mapping) else (skills or ())
    return HandoffRequest(
        request_id=request_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        interaction_type=interaction_type,
        required_skills=tuple(SkillRequirement(s, p) for s, p in pairs),
        language=language,
        urgency=urgency,
        summary=summary,
        reason=reason,
    )


def handoff(
    handoff_id: str = HANDOFF_ID,
    *,
    req: HandoffRequest | None = None,
    state: HandoffState = HandoffState.QUEUED,
    created_at: datetime = T0,
    deadline: datetime | None = None,
    requeue_count: int = 0,
    agent_id: str | None = None,
    offer_id: str | None = None,
    assigned_at: datetime | None = None,
    ended_at: datetime | None = None,
    completion: Completion | None = None,
    **request_fields: Any,
) -> Handoff:
    """A handoff; its deadline defaults to the default policy's target for its urgency.
    Extra keyword arguments go to `request` when `req` is not given."""
    req = req or request(**request_fields)
    return Handoff(
        id=handoff_id,
        request=req,
        fingerprint=req.fingerprint(),
        state=state,
        created_at=created_at,
        deadline=deadline if deadline is not None else POLICY.deadline(created_at, req.urgency),
        requeue_count=requeue_count,
        agent_id=agent_id,
        offer_id=offer_id,
        assigned_at=assigned_at,
        ended_at=ended_at,
        completion=completion,
    )


def offer(
    offer_id: str = OFFER_ID,
    *,
    handoff_id: str = HANDOFF_ID,
    agent_id: str = "agent-1",
    state: OfferState = OfferState.PENDING,
    created_at: datetime = T0,
    expires_at: datetime | None = None,
    decided_at: datetime | None = None,
) -> Offer:
    """An offer of a handoff to an agent, expiring after the default offer timeout."""
    return Offer(
        id=offer_id,
        handoff_id=handoff_id,
        agent_id=agent_id,
        state=state,
        created_at=created_at,
        expires_at=expires_at or POLICY.offer_expiry(created_at),
        decided_at=decided_at,
        decline_reason=None,
        rescind_reason=None,
    )


def completed_interaction(
    *, accepted: datetime, ended: datetime, outcome: Outcome = Outcome.RESOLVED
) -> Interaction:
    """A completed interaction offered 5 s before `accepted`, accepted then, ended at `ended`."""
    done = Completion(outcome, "REFUND/OK", "refunded")
    return Interaction(
        offer=offer(
            state=OfferState.COMPLETED,
            created_at=accepted - timedelta(seconds=5),
            decided_at=accepted,
        ),
        handoff=handoff(
            state=HandoffState.COMPLETED,
            agent_id="agent-1",
            offer_id=OFFER_ID,
            assigned_at=accepted,
            ended_at=ended,
            completion=done,
        ),
    )
