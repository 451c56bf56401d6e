"""`HandoffClient`: what an upstream bot calls to hand a customer to a human.

    async with HandoffClient(token=bot_token) as handoffs:
        handoff = await handoffs.request_handoff(
            conversation_id="c-1", customer_id="u-1", interaction_type="billing_dispute",
            skills={"billing": 3}, summary="Charged twice", signals=RiskSignals(distress=True),
        )
        async for update in handoffs.watch_handoff(handoff.handoff_id):
            ...  # QUEUED, OFFERED, ASSIGNED (to whom), COMPLETED (how)

Results are the API's own messages (`humanline.v1.handoff_pb2.Handoff`, typed); arguments
are plain Python, with enum values by their short names (`urgency="high"`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from functools import cached_property
from typing import Literal

from humanline.client.connection import Client, enum_value, skill_levels
from humanline.v1 import handoff_pb2, handoff_service_pb2, handoff_service_pb2_grpc

Handoff = handoff_pb2.Handoff
RiskSignals = handoff_pb2.RiskSignals
SkillRequirement = handoff_pb2.SkillRequirement

UrgencyName = Literal["low", "normal", "high", "critical"]
ReasonName = Literal[
    "customer_request",
    "low_confidence",
    "policy_exception",
    "tool_failure",
    "repeated_contact",
    "other",
]

TERMINAL = frozenset(
    {
        handoff_pb2.HANDOFF_STATE_COMPLETED,
        handoff_pb2.HANDOFF_STATE_CANCELLED,
        handoff_pb2.HANDOFF_STATE_EXPIRED,
    }
)


class HandoffClient(Client):
    """HandoffService for a bot (a token with the bot role; ops may call it too)."""

    @cached_property
    def _stub(self) -> handoff_service_pb2_grpc.HandoffServiceStub:
        return handoff_service_pb2_grpc.HandoffServiceStub(self.channel)

    async def request_handoff(
        self,
        *,
        conversation_id: str,
        customer_id: str,
        interaction_type: str,
        request_id: str | None = None,
        skills: Mapping[str, int] | None = None,
        optional_skills: Iterable[str] = (),
        language: str = "",
        urgency: UrgencyName | int = "normal",
        summary: str = "",
        reason: ReasonName | int | None = None,
        signals: handoff_pb2.RiskSignals | None = None,
        preferred_agent_id: str = "",
    ) -> Handoff:
        """Asks for a human; returns the handoff, QUEUED or already OFFERED, with its queue
        position, estimated wait and the routing decision (`routing`).

        `request_id` is the idempotency key: the same id again returns the same handoff
        rather than a second one. Pass your own (one per escalation, reused when you retry
        after an error) to be safe across your own retries; without one a fresh UUID is
        used, which gRPC's own retries of this call reuse. `skills` maps each required
        skill to its minimum proficiency (1-5); names in `optional_skills` may be dropped by
        the routing policy after a long wait. Without skills, the policy's defaults apply.
        """
        optional = set(optional_skills)
        request = handoff_service_pb2.RequestHandoffRequest(
            request_id=request_id or str(uuid.uuid4()),
            conversation_id=conversation_id,
            customer_id=customer_id,
            interaction_type=interaction_type,
            required_skills=[
                handoff_pb2.SkillRequirement(
                    skill=skill, min_proficiency=level, optional=skill in optional
                )
                for skill, level in skill_levels(skills)
            ],
            language=language,
            urgency=enum_value(handoff_pb2.Urgency, "URGENCY_", urgency),  # type: ignore[arg-type]
            summary=summary,
            preferred_agent_id=preferred_agent_id,
        )
        if reason is not None:
            request.reason = enum_value(handoff_pb2.HandoffReason, "HANDOFF_REASON_", reason)  # type: ignore[assignment]
        if signals is not None:
            request.signals.CopyFrom(signals)
        response: handoff_service_pb2.RequestHandoffResponse = await self._unary(
            self._stub.RequestHandoff, request
        )
        return response.handoff

    async def get_handoff(self, handoff_id: str) -> Handoff:
        """The handoff now, with its full record: every offer, the routing reasons, the
        outcome and the customer's feedback."""
        request = handoff_service_pb2.GetHandoffRequest(handoff_id=handoff_id)
        response: handoff_service_pb2.GetHandoffResponse = await self._unary(
            self._stub.GetHandoff, request
        )
        return response.handoff

    async def watch_handoff(self, handoff_id: str) -> AsyncIterator[Handoff]:
        """The handoff now, then again at each change; the iteration ends after it ends
        (completed, cancelled or expired)."""
        request = handoff_service_pb2.WatchHandoffRequest(handoff_id=handoff_id)
        async for update in self._stream(self._stub.WatchHandoff, request):
            yield update.handoff
            if update.handoff.state in TERMINAL:
                return

    async def cancel_handoff(self, handoff_id: str) -> Handoff:
        """The customer left: takes the handoff out of the queue, or back from the agent it
        was offered to. An assigned or ended handoff cannot be cancelled
        (FAILED_PRECONDITION)."""
        request = handoff_service_pb2.CancelHandoffRequest(handoff_id=handoff_id)
        response: handoff_service_pb2.CancelHandoffResponse = await self._unary(
            self._stub.CancelHandoff, request
        )
        return response.handoff

    async def record_feedback(
        self,
        handoff_id: str,
        *,
        csat: int,
        reason_tags: Iterable[str] = (),
        contacted_again: bool = False,
    ) -> Handoff:
        """The customer's rating (1-5) of a completed handoff, with optional tags, and
        whether they came back about the same issue. Recording the same feedback again is a
        no-op; different feedback for a rated handoff is ALREADY_EXISTS."""
        request = handoff_service_pb2.RecordFeedbackRequest(
            handoff_id=handoff_id,
            csat=csat,
            reason_tags=list(reason_tags),
            contacted_again=contacted_again,
        )
        response: handoff_service_pb2.RecordFeedbackResponse = await self._unary(
            self._stub.RecordFeedback, request
        )
        return response.handoff
