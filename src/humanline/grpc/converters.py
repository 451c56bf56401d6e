"""Protobuf messages to domain objects and back. Nothing else crosses the boundary.

Incoming messages are checked here, at the edge, with the domain's validation rules: every
violation in a request is collected and reported at once as INVALID_ARGUMENT with field
paths as the API names them (`required_skills[1].min_proficiency`). Enum values a client
sends that this server does not know are violations too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from humanline.domain import model
from humanline.domain.errors import InvalidArgument, Violations
from humanline.domain.model import RiskClass
from humanline.domain.quality import Alert, Dimension, GroupQuality, OutcomeQuery
from humanline.domain.routing import RelaxationStep
from humanline.domain.validation import (
    MAX_COMMAND_ID,
    MAX_DISPLAY_NAME,
    check_agent_skills,
    check_capacity,
    check_completion,
    check_feedback,
    check_handoff_request,
    check_identifier,
    check_languages,
    check_signals,
    check_skill_requirements,
    check_text,
    check_uuid,
    normalize_language,
    normalize_uuid,
)
from humanline.grpc.errors import google_code
from humanline.service.agents import Connection
from humanline.service.events import (
    AgentEvent,
    AssignmentMade,
    CommandFailed,
    Draining,
    HeartbeatAck,
    OfferMade,
    OfferWithdrawn,
    StatusUpdated,
    StreamClosing,
)
from humanline.service.handoffs import HandoffView
from humanline.service.policies import PolicyInForce
from humanline.service.pool import (
    DEFAULT_AT_RISK_HORIZON,
    MAX_AT_RISK_HORIZON,
    MAX_PAGE_SIZE,
    PoolStatus,
    QualityReport,
)
from humanline.service.pool_watch import (
    DEFAULT_MIN_INTERVAL,
    MAX_MIN_INTERVAL,
    MIN_MIN_INTERVAL,
)
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
    quality_pb2,
    routing_pb2,
)

E = TypeVar("E", bound=enum.Enum)

# --- enums ---------------------------------------------------------------------------------


def enum_to_proto(wrapper: EnumTypeWrapper, prefix: str, value: enum.Enum) -> Any:
    """The proto enum number for a domain enum member (matched by name). Typed Any because
    each generated enum has a type of its own."""
    return wrapper.Value(f"{prefix}{value.name}")


def enum_from_proto(
    v: Violations, field: str, wrapper: EnumTypeWrapper, prefix: str, number: int, cls: type[E]
) -> E | None:
    """The domain enum member for a proto enum number; records a violation for numbers this
    server does not know. Returns None for 0 (unspecified)."""
    if number == 0:
        return None
    try:
        name = wrapper.Name(number).removeprefix(prefix)
        return cls[name]
    except (ValueError, KeyError):
        v.add(field, f"unknown value {number}")
        return None


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp."""
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(value: timedelta) -> Duration:
    """A protobuf Duration."""
    d = Duration()
    d.FromTimedelta(value)
    return d


def _set_time(message: Any, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).CopyFrom(timestamp(value))


# --- handoffs ------------------------------------------------------------------------------


def handoff_request(msg: handoff_service_pb2.RequestHandoffRequest) -> model.HandoffRequest:
    """A validated HandoffRequest, or InvalidArgument with every violation."""
    v = Violations()
    urgency = enum_from_proto(
        v, "urgency", handoff_pb2.Urgency, "URGENCY_", msg.urgency, model.Urgency
    )
    reason = enum_from_proto(
        v, "reason", handoff_pb2.HandoffReason, "HANDOFF_REASON_", msg.reason, model.HandoffReason
    )
    request = model.HandoffRequest(
        request_id=normalize_uuid(msg.request_id) or msg.request_id,
        conversation_id=msg.conversation_id,
        customer_id=msg.customer_id,
        interaction_type=msg.interaction_type,
        required_skills=tuple(
            model.SkillRequirement(r.skill, r.min_proficiency or 1, r.optional)
            for r in msg.required_skills
        ),
        language=normalize_language(msg.language) or None,
        urgency=urgency or model.Urgency.NORMAL,
        summary=msg.summary,
        reason=reason or model.HandoffReason.UNSPECIFIED,
        signals=_signals(v, msg.signals),
        preferred_agent_id=msg.preferred_agent_id or None,
    )
    check_handoff_request(v, request)
    v.raise_if_any()
    return request


def _signals(v: Violations, msg: handoff_pb2.RiskSignals) -> model.Signals:
    def optional(name: str) -> Any:
        return getattr(msg, name) if msg.HasField(name) else None

    signals = model.Signals(
        sentiment=optional("sentiment"),
        distress=msg.distress,
        suspected_fraud=msg.suspected_fraud,
        disputed_amount=optional("disputed_amount"),
        tier=enum_from_proto(
            v,
            "signals.tier",
            handoff_pb2.CustomerTier,
            "CUSTOMER_TIER_",
            msg.tier,
            model.CustomerTier,
        )
        or model.CustomerTier.UNSPECIFIED,
        tenure_days=optional("tenure_days"),
        bot_confidence=optional("bot_confidence"),
    )
    check_signals(
        v,
        "signals",
        sentiment=signals.sentiment,
        disputed_amount=signals.disputed_amount,
        tenure_days=signals.tenure_days,
        bot_confidence=signals.bot_confidence,
    )
    return signals


def uuid_id(field: str, value: str) -> str:
    """A server-made id (handoff, offer, interaction) from a request, validated, canonical."""
    v = Violations()
    check_uuid(v, field, value)
    v.raise_if_any()
    return normalize_uuid(value) or value


def handoff_pb(view: HandoffView) -> handoff_pb2.Handoff:
    """The API's Handoff."""
    h, req = view.handoff, view.handoff.request
    msg = handoff_pb2.Handoff(
        handoff_id=h.id,
        request_id=req.request_id,
        conversation_id=req.conversation_id,
        customer_id=req.customer_id,
        interaction_type=req.interaction_type,
        required_skills=_skills_pb(req.required_skills),
        language=req.language or "",
        urgency=_urgency_pb(req.urgency),
        summary=req.summary,
        reason=_reason_pb(req.reason),
        state=enum_to_proto(handoff_pb2.HandoffState, "HANDOFF_STATE_", h.state),
        queue_position=view.position,
        requeue_count=h.requeue_count,
        bot_id=h.bot_id,
        routing=h.routing,
        relaxation_step=h.plan.step,
        end_reason=h.end_reason,
        preferred_agent_id=req.preferred_agent_id or "",
    )
    if view.estimated_wait is not None:
        msg.estimated_wait.CopyFrom(duration(view.estimated_wait))
    if h.agent_id is not None and view.agent_name is not None:
        msg.assigned_agent.CopyFrom(
            handoff_pb2.AssignedAgent(agent_id=h.agent_id, display_name=view.agent_name)
        )
    _set_time(msg, "create_time", h.created_at)
    _set_time(msg, "target_time", h.deadline)
    _set_time(msg, "assign_time", h.assigned_at)
    _set_time(msg, "end_time", h.ended_at)
    _set_time(msg, "expire_time", h.plan.expires_at)
    _set_time(msg, "preferred_agent_wait_end_time", h.plan.preferred_until)
    if h.completion is not None:
        msg.outcome = enum_to_proto(handoff_pb2.Outcome, "OUTCOME_", h.completion.outcome)
        msg.disposition_code = h.completion.disposition_code
    for offer in view.offers:
        record = msg.offers.add(
            offer_id=offer.id,
            agent_id=offer.agent_id,
            state=enum_to_proto(handoff_pb2.OfferState, "OFFER_STATE_", offer.state),
            ranking=offer.ranking,
        )
        _set_time(record, "offer_time", offer.created_at)
        _set_time(record, "decide_time", offer.decided_at)
    if h.feedback is not None:
        msg.feedback.CopyFrom(
            handoff_pb2.Feedback(
                csat=h.feedback.csat,
                reason_tags=h.feedback.reason_tags,
                contacted_again=h.feedback.contacted_again,
            )
        )
        _set_time(msg.feedback, "record_time", h.feedback_at)
    return msg


def feedback(msg: handoff_service_pb2.RecordFeedbackRequest) -> tuple[str, model.Feedback]:
    """The handoff id and the validated Feedback of a RecordFeedback request."""
    v = Violations()
    check_uuid(v, "handoff_id", msg.handoff_id)
    given = model.Feedback(msg.csat, tuple(msg.reason_tags), msg.contacted_again)
    check_feedback(v, given)
    v.raise_if_any()
    handoff_id = normalize_uuid(msg.handoff_id)
    assert handoff_id is not None
    return handoff_id, given


def _skills_pb(skills: tuple[model.SkillRequirement, ...]) -> list[handoff_pb2.SkillRequirement]:
    return [
        handoff_pb2.SkillRequirement(
            skill=r.skill, min_proficiency=r.min_proficiency, optional=r.optional
        )
        for r in skills
    ]


def _reason_pb(reason: model.HandoffReason) -> Any:
    return enum_to_proto(handoff_pb2.HandoffReason, "HANDOFF_REASON_", reason)


def _urgency_pb(urgency: model.Urgency) -> Any:
    return enum_to_proto(handoff_pb2.Urgency, "URGENCY_", urgency)


# --- agents --------------------------------------------------------------------------------


def identifier(field: str, value: str) -> str:
    """An identifier from a request (an agent id, an interaction type), validated."""
    v = Violations()
    check_identifier(v, field, value)
    v.raise_if_any()
    return value


agent_id = identifier


def _skills(v: Violations, field: str, skills: Sequence[agent_pb2.AgentSkill]) -> dict[str, int]:
    """An agent's skills, validated as the request lists them (so indices match)."""
    check_agent_skills(v, field, [(s.skill, s.proficiency) for s in skills])
    return {s.skill: s.proficiency for s in skills}


def _languages(v: Violations, field: str, tags: Sequence[str]) -> frozenset[str]:
    """An agent's languages, validated as the request lists them, normalized."""
    check_languages(v, field, tags)
    return frozenset(normalize_language(tag) for tag in tags)


def create_agent(
    msg: pool_service_pb2.CreateAgentRequest,
) -> tuple[str | None, model.AgentProfile]:
    """CreateAgent's validated id (None: the server chooses) and profile (output-only fields
    of the Agent message are ignored)."""
    v = Violations()
    if msg.agent_id:
        check_identifier(v, "agent_id", msg.agent_id)
    v.check(msg.HasField("agent"), "agent", "required")
    agent = msg.agent
    check_text(v, "agent.display_name", agent.display_name, max_len=MAX_DISPLAY_NAME)
    profile = model.AgentProfile(
        display_name=agent.display_name,
        skills=_skills(v, "agent.skills", agent.skills),
        languages=_languages(v, "agent.languages", agent.languages),
        capacity=agent.capacity or 1,
    )
    check_capacity(v, "agent.capacity", profile.capacity)
    v.raise_if_any()
    return msg.agent_id or None, profile


UPDATABLE = ("display_name", "skills", "languages", "capacity")


def profile_update(msg: pool_service_pb2.UpdateAgentRequest) -> model.ProfileUpdate:
    """A validated ProfileUpdate from UpdateAgent's agent and update mask."""
    v = Violations()
    agent = msg.agent
    paths = list(msg.update_mask.paths)
    for i, path in enumerate(paths):
        if path not in UPDATABLE:
            v.add(f"update_mask.paths[{i}]", f"must be one of {', '.join(UPDATABLE)}")
    if not paths:
        set_fields = {
            "display_name": bool(agent.display_name),
            "skills": bool(agent.skills),
            "languages": bool(agent.languages),
            "capacity": bool(agent.capacity),
        }
        paths = [field for field, present in set_fields.items() if present]
        v.check(bool(paths), "update_mask", "nothing to update")
    if "display_name" in paths:
        check_text(v, "agent.display_name", agent.display_name, max_len=MAX_DISPLAY_NAME)
    update = model.ProfileUpdate(
        display_name=agent.display_name if "display_name" in paths else None,
        skills=_skills(v, "agent.skills", agent.skills) if "skills" in paths else None,
        languages=(
            _languages(v, "agent.languages", agent.languages) if "languages" in paths else None
        ),
        capacity=(agent.capacity or 1) if "capacity" in paths else None,
    )
    if update.capacity is not None:
        check_capacity(v, "agent.capacity", update.capacity)
    v.raise_if_any()
    return update


def agent_pb(agent: model.Agent) -> agent_pb2.Agent:
    """The API's Agent."""
    msg = agent_pb2.Agent(
        agent_id=agent.id,
        display_name=agent.profile.display_name,
        skills=[
            agent_pb2.AgentSkill(skill=s, proficiency=p)
            for s, p in sorted(agent.profile.skills.items())
        ],
        languages=sorted(agent.profile.languages),
        capacity=agent.profile.capacity,
        state=enum_to_proto(agent_pb2.AgentState, "AGENT_STATE_", agent.state),
        load=agent.load,
        consecutive_misses=agent.consecutive_misses,
    )
    _set_time(msg, "last_assign_time", agent.last_assigned_at)
    _set_time(msg, "create_time", agent.created_at)
    _set_time(msg, "update_time", agent.updated_at)
    return msg


def list_filter(
    msg: pool_service_pb2.ListAgentsRequest,
) -> tuple[model.AgentState | None, str | None]:
    """ListAgents' page size check and its state and skill filters."""
    v = Violations()
    v.check(0 <= msg.page_size <= MAX_PAGE_SIZE, "page_size", f"must be 0 to {MAX_PAGE_SIZE}")
    state = enum_from_proto(
        v, "state", agent_pb2.AgentState, "AGENT_STATE_", msg.state, model.AgentState
    )
    if msg.skill:
        check_identifier(v, "skill", msg.skill)
    v.raise_if_any()
    return state, msg.skill or None


def pool_status_pb(status: PoolStatus) -> pool_service_pb2.PoolStatus:
    """The API's PoolStatus."""
    snap = status.snapshot
    msg = pool_service_pb2.PoolStatus(
        agents_by_state=_state_counts(snap.agents_by_state),
        skills=[
            pool_service_pb2.CapacityCount(
                key=c.key, available_agents=c.available_agents, free_capacity=c.free_capacity
            )
            for c in snap.skills
        ],
        languages=[
            pool_service_pb2.CapacityCount(
                key=c.key, available_agents=c.available_agents, free_capacity=c.free_capacity
            )
            for c in snap.languages
        ],
        queue_by_urgency=[
            pool_service_pb2.UrgencyCount(urgency=_urgency_pb(u), count=n)
            for u, n in sorted(snap.queue_by_urgency.items(), reverse=True)
        ],
        queue_by_interaction_type=[
            pool_service_pb2.InteractionTypeCount(interaction_type=t, count=n)
            for t, n in snap.queue_by_type.items()
        ],
        agents_by_skill=[
            pool_service_pb2.SkillStateCount(skill=skill, agents_by_state=_state_counts(counts))
            for skill, counts in sorted(snap.agents_by_skill.items())
        ],
        at_risk=[
            pool_service_pb2.AtRiskCount(
                interaction_type=r.interaction_type, overdue=r.overdue, due_soon=r.due_soon
            )
            for r in status.at_risk
        ],
    )
    msg.oldest_wait.CopyFrom(duration(status.oldest_wait))
    msg.snapshot_time.CopyFrom(timestamp(status.taken_at))
    msg.at_risk_horizon.CopyFrom(duration(status.horizon))
    return msg


def _state_counts(counts: dict[model.AgentState, int]) -> list[pool_service_pb2.AgentStateCount]:
    return [
        pool_service_pb2.AgentStateCount(
            state=enum_to_proto(agent_pb2.AgentState, "AGENT_STATE_", state), count=count
        )
        for state, count in counts.items()
    ]


_NANOS = 1_000_000_000


def _span(
    v: Violations, field: str, msg: Any, low: timedelta, high: timedelta, default: timedelta
) -> timedelta:
    """A Duration field of `msg` between `low` and `high` (`default` when unset); a violation
    (and `default`) for one out of range or not a valid Duration."""
    if not msg.HasField(field):
        return default
    value: Duration = getattr(msg, field)
    seconds, nanos = value.seconds, value.nanos
    if not -_NANOS < nanos < _NANOS or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        v.add(field, "is not a valid duration")
        return default
    total = seconds * _NANOS + nanos
    if not _in_nanos(low) <= total <= _in_nanos(high):
        v.add(field, f"must be between {_spoken(low)} and {_spoken(high)}")
        return default
    return timedelta(microseconds=total // 1000)


def _in_nanos(span: timedelta) -> int:
    return (span // timedelta(microseconds=1)) * 1000


def _spoken(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g} hour" + ("s" if seconds != 3600 else "")
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g} minute" + ("s" if seconds != 60 else "")
    return f"{seconds:g} seconds"


def _horizon(v: Violations, msg: Any) -> timedelta:
    return _span(
        v, "at_risk_horizon", msg, timedelta(0), MAX_AT_RISK_HORIZON, DEFAULT_AT_RISK_HORIZON
    )


def pool_status_horizon(msg: pool_service_pb2.GetPoolStatusRequest) -> timedelta:
    """GetPoolStatus' at-risk horizon, validated."""
    v = Violations()
    horizon = _horizon(v, msg)
    v.raise_if_any()
    return horizon


def pool_watch(msg: pool_service_pb2.WatchPoolStatusRequest) -> tuple[timedelta, timedelta]:
    """WatchPoolStatus' at-risk horizon and least interval between messages, validated."""
    v = Violations()
    horizon = _horizon(v, msg)
    interval = _span(
        v, "min_interval", msg, MIN_MIN_INTERVAL, MAX_MIN_INTERVAL, DEFAULT_MIN_INTERVAL
    )
    v.raise_if_any()
    return horizon, interval


# --- agent stream --------------------------------------------------------------------------


def command_id(value: str) -> str:
    """The client's command id, bounded (an over-long id is cut, never echoed whole)."""
    return value[:MAX_COMMAND_ID]


def agent_status(field: str, number: int, default: model.AgentStatus | None) -> model.AgentStatus:
    """AVAILABLE or AWAY from a request; unspecified means `default` (required if None)."""
    v = Violations()
    status = (
        enum_from_proto(v, field, agent_pb2.AgentStatus, "AGENT_STATUS_", number, model.AgentStatus)
        or default
    )
    if status is None and number == 0:
        v.add(field, "required: AGENT_STATUS_AVAILABLE or AGENT_STATUS_AWAY")
    v.raise_if_any()
    assert status is not None
    return status


def decline_reason(number: int) -> model.DeclineReason:
    """Why an agent declines, from a request."""
    v = Violations()
    reason = enum_from_proto(
        v,
        "decline_offer.reason",
        agent_service_pb2.DeclineReason,
        "DECLINE_REASON_",
        number,
        model.DeclineReason,
    )
    v.raise_if_any()
    return reason or model.DeclineReason.UNSPECIFIED


def completion(msg: agent_service_pb2.CompleteInteractionRequest) -> model.Completion:
    """A validated Completion."""
    v = Violations()
    check_identifier(v, "agent_id", msg.agent_id)
    check_uuid(v, "interaction_id", msg.interaction_id)
    outcome = enum_from_proto(
        v, "outcome", handoff_pb2.Outcome, "OUTCOME_", msg.outcome, model.Outcome
    )
    if msg.outcome == 0:
        v.add("outcome", "required")
    check_completion(v, msg.disposition_code, msg.notes)
    v.raise_if_any()
    assert outcome is not None
    return model.Completion(outcome, msg.disposition_code, msg.notes)


def interaction_details(handoff: model.Handoff) -> agent_service_pb2.InteractionDetails:
    """What an agent sees about a handoff."""
    req = handoff.request
    msg = agent_service_pb2.InteractionDetails(
        handoff_id=handoff.id,
        conversation_id=req.conversation_id,
        customer_id=req.customer_id,
        interaction_type=req.interaction_type,
        urgency=_urgency_pb(req.urgency),
        summary=req.summary,
        reason=_reason_pb(req.reason),
        required_skills=_skills_pb(req.required_skills),
        language=req.language or "",
        requeue_count=handoff.requeue_count,
    )
    _set_time(msg, "create_time", handoff.created_at)
    return msg


def interaction_pb(interaction: model.Interaction) -> agent_service_pb2.Interaction:
    """The API's Interaction."""
    msg = agent_service_pb2.Interaction(
        interaction_id=interaction.id, details=interaction_details(interaction.handoff)
    )
    _set_time(msg, "accept_time", interaction.offer.decided_at)
    completion_ = interaction.handoff.completion
    if interaction.offer.state is model.OfferState.COMPLETED and completion_ is not None:
        _set_time(msg, "complete_time", interaction.handoff.ended_at)
        msg.outcome = enum_to_proto(handoff_pb2.Outcome, "OUTCOME_", completion_.outcome)
        msg.disposition_code = completion_.disposition_code
        if interaction.handle_time is not None:
            msg.handle_time.CopyFrom(duration(interaction.handle_time))
    return msg


def welcome(
    conn: Connection, heartbeat: timedelta, grace: timedelta, command: str
) -> agent_service_pb2.ConnectResponse:
    """The first message of an agent stream."""
    R = agent_service_pb2.ConnectResponse
    return R(
        command_id=command,
        welcome=R.Welcome(
            session_id=conn.session.id,
            resume_token=conn.resume_token,
            heartbeat_interval=duration(heartbeat),
            grace_period=duration(grace),
            resumed=conn.resumed,
            agent=agent_pb(conn.agent),
            active_interactions=[interaction_pb(i) for i in conn.interactions],
        ),
    )


def connect_response(event: AgentEvent) -> agent_service_pb2.ConnectResponse | None:
    """The stream message for an event; None for StreamClosing (the handler ends the call)."""
    R = agent_service_pb2.ConnectResponse
    match event:
        case OfferMade(offer=offer, handoff=handoff):
            msg = agent_service_pb2.Offer(offer_id=offer.id, details=interaction_details(handoff))
            _set_time(msg, "offer_time", offer.created_at)
            _set_time(msg, "expire_time", offer.expires_at)
            return R(offer=msg)
        case OfferWithdrawn(offer_id=oid, reason=reason, command_id=cid):
            return R(
                command_id=cid,
                offer_rescinded=R.OfferRescinded(
                    offer_id=oid,
                    reason=enum_to_proto(
                        agent_service_pb2.RescindReason, "RESCIND_REASON_", reason
                    ),
                ),
            )
        case AssignmentMade(interaction=interaction, command_id=cid):
            return R(
                command_id=cid,
                assignment_confirmed=R.AssignmentConfirmed(interaction=interaction_pb(interaction)),
            )
        case StatusUpdated(status=status, reason=reason, command_id=cid):
            return R(
                command_id=cid,
                status_changed=R.StatusChanged(
                    status=enum_to_proto(agent_pb2.AgentStatus, "AGENT_STATUS_", status),
                    reason=enum_to_proto(
                        agent_service_pb2.StatusChangeReason, "STATUS_CHANGE_REASON_", reason
                    ),
                ),
            )
        case HeartbeatAck(server_time=at, command_id=cid):
            return R(command_id=cid, heartbeat=R.Heartbeat(server_time=timestamp(at)))
        case Draining(resume_before=at):
            drain = R.Drain()
            _set_time(drain, "resume_before", at)
            return R(drain=drain)
        case CommandFailed(error=error, command_id=cid):
            metadata = dict(error.metadata)
            if isinstance(error, InvalidArgument):
                metadata.update((fv.field, fv.description) for fv in error.violations)
            return R(
                command_id=cid,
                command_rejected=R.CommandRejected(
                    code=google_code(error),
                    message=error.message,
                    reason=error.reason,
                    metadata=metadata,
                ),
            )
        case StreamClosing():
            return None
    raise TypeError(f"unknown event {event!r}")


# --- routing policies ----------------------------------------------------------------------

POLICY_FIELDS = (
    "target",
    "required_skills",
    "min_proficiency",
    "risk_class",
    "offer_timeout",
    "max_wait",
    "relaxation",
    "quality_ranking",
    "known_agent_wait",
    "agent_order",
    "expert_level",
    "expert_delay",
)
MAX_POLICY_DURATION = timedelta(days=7)
MAX_RELAXATION_STEPS = 10


def _policy_duration(v: Violations, field: str, value: Duration) -> timedelta:
    if not 0 <= value.seconds <= MAX_POLICY_DURATION.total_seconds() or value.nanos < 0:
        v.add(field, f"must be between 0 and {MAX_POLICY_DURATION.days} days")
        return timedelta(0)
    return value.ToTimedelta()


def _set_in(msg: routing_pb2.RoutingPolicy, field: str) -> bool:
    """Whether a policy message sets `field` (a message field present, a list non-empty, a
    number non-zero, an enum specified)."""
    if field in (
        "target",
        "offer_timeout",
        "max_wait",
        "known_agent_wait",
        "quality_ranking",
        "expert_delay",
    ):
        return msg.HasField(field)
    return bool(getattr(msg, field))


def policy_changes(
    msg: routing_pb2.RoutingPolicy, paths: Sequence[str] | None
) -> tuple[str, dict[str, Any]]:
    """The interaction type a policy message names and the fields it changes (by the domain's
    names), validated: `paths` lists them (an update mask); None or empty means every field
    the message sets."""
    v = Violations()
    check_identifier(v, "policy.interaction_type", msg.interaction_type)
    fields = list(paths or ())
    for i, path in enumerate(fields):
        if path not in POLICY_FIELDS:
            v.add(f"update_mask.paths[{i}]", f"must be one of {', '.join(POLICY_FIELDS)}")
    if not fields:
        fields = [f for f in POLICY_FIELDS if _set_in(msg, f)]
    changes: dict[str, Any] = {}
    for name in dict.fromkeys(fields):
        place = f"policy.{name}"
        match name:
            case "target" | "max_wait" | "known_agent_wait" | "expert_delay":
                changes[name] = _policy_duration(v, place, getattr(msg, name))
            case "offer_timeout":  # unset or zero: the server's setting
                changes[name] = _policy_duration(v, place, msg.offer_timeout) or None
            case "required_skills":
                skills = [
                    model.SkillRequirement(s.skill, s.min_proficiency) for s in msg.required_skills
                ]
                check_skill_requirements(v, place, skills)
                changes[name] = tuple(skills)
            case "min_proficiency":
                changes[name] = msg.min_proficiency
            case "expert_level":
                changes[name] = msg.expert_level or None
                if not msg.expert_level:  # zero: no agent is kept back, for no time
                    changes["expert_delay"] = timedelta(0)
            case "risk_class":
                risk = enum_from_proto(
                    v, place, routing_pb2.RiskClass, "RISK_CLASS_", msg.risk_class, RiskClass
                )
                if risk is None and msg.risk_class == 0:
                    v.add(place, "required when named in the update mask")
                if risk is not None:
                    changes[name] = risk
            case "relaxation":
                if len(msg.relaxation) > MAX_RELAXATION_STEPS:
                    v.add(place, f"must list at most {MAX_RELAXATION_STEPS} steps")
                changes[name] = tuple(
                    RelaxationStep(
                        _policy_duration(v, f"{place}[{i}].after", step.after),
                        step.min_proficiency or None,
                        step.drop_optional,
                    )
                    for i, step in enumerate(msg.relaxation[:MAX_RELAXATION_STEPS])
                )
            case "quality_ranking":
                changes[name] = msg.quality_ranking
            case "agent_order":
                order = enum_from_proto(
                    v,
                    place,
                    routing_pb2.AgentOrder,
                    "AGENT_ORDER_",
                    msg.agent_order,
                    model.AgentOrder,
                )
                if order is None and msg.agent_order == 0:
                    v.add(place, "required when named in the update mask")
                if order is not None:
                    changes[name] = order
    v.raise_if_any()
    return msg.interaction_type, changes


def routing_policy_pb(found: PolicyInForce) -> routing_pb2.RoutingPolicy:
    """The API's RoutingPolicy for a policy in force."""
    policy = found.policy
    msg = routing_pb2.RoutingPolicy(
        interaction_type=policy.interaction_type,
        target=duration(policy.target),
        required_skills=_skills_pb(policy.required_skills),
        min_proficiency=policy.min_proficiency,
        risk_class=enum_to_proto(routing_pb2.RiskClass, "RISK_CLASS_", policy.risk_class),
        agent_order=enum_to_proto(routing_pb2.AgentOrder, "AGENT_ORDER_", policy.agent_order),
        offer_timeout=None if policy.offer_timeout is None else duration(policy.offer_timeout),
        max_wait=duration(policy.max_wait),
        relaxation=[
            routing_pb2.RelaxationStep(
                after=duration(step.after),
                min_proficiency=step.min_proficiency or 0,
                drop_optional=step.drop_optional,
            )
            for step in policy.relaxation
        ],
        quality_ranking=policy.quality_ranking,
        known_agent_wait=duration(policy.known_agent_wait),
        expert_level=policy.expert_level or 0,
        expert_delay=None if policy.expert_level is None else duration(policy.expert_delay),
        source=(
            routing_pb2.POLICY_SOURCE_BUILT_IN
            if found.source is None
            else enum_to_proto(routing_pb2.PolicySource, "POLICY_SOURCE_", found.source)
        ),
    )
    _set_time(msg, "create_time", found.created_at)
    _set_time(msg, "update_time", found.updated_at)
    return msg


# --- quality ---------------------------------------------------------------------------------

# Timestamps a window may name: the years 2000 to 2999 (protobuf allows 1 to 9999).
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _window_time(v: Violations, field: str, msg: Any) -> datetime | None:
    if not msg.HasField(field):
        return None
    stamp: Timestamp = getattr(msg, field)
    if not 0 <= stamp.nanos < 1_000_000_000:
        v.add(field, "nanos must be between 0 and 999,999,999")
        return None
    seconds = stamp.seconds
    if not _EARLIEST.timestamp() <= seconds < _LATEST.timestamp():
        v.add(field, "must be in the years 2000 to 2999")
        return None
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class QualityQuery:
    """A validated GetQualityReport request."""

    by: Dimension
    since: datetime | None
    until: datetime | None
    interaction_type: str | None


def quality_query(msg: pool_service_pb2.GetQualityReportRequest) -> QualityQuery:
    """The validated query of a GetQualityReport request."""
    v = Violations()
    by = enum_from_proto(
        v, "group_by", quality_pb2.QualityDimension, "QUALITY_DIMENSION_", msg.group_by, Dimension
    )
    if msg.group_by == 0:
        v.add("group_by", "required")
    since = _window_time(v, "start_time", msg)
    until = _window_time(v, "end_time", msg)
    if msg.interaction_type:
        check_identifier(v, "interaction_type", msg.interaction_type)
    v.raise_if_any()
    assert by is not None
    return QualityQuery(by, since, until, msg.interaction_type or None)


def _seconds_pb(seconds: float | None) -> Duration | None:
    return None if seconds is None else duration(timedelta(seconds=seconds))


def quality_group_pb(group: GroupQuality) -> quality_pb2.QualityGroup:
    """The API's QualityGroup."""
    return quality_pb2.QualityGroup(
        key=group.key,
        handoffs=group.handoffs,
        completed=group.completed,
        resolved=group.resolved,
        resolution_rate=group.resolution_rate,
        csat_count=group.csat_count,
        csat_mean=group.csat_mean,
        csat_counts=group.csat_counts,
        csat_satisfied=group.satisfied,
        within_target=group.within_target,
        time_to_agent_p50=_seconds_pb(group.time_to_agent_p50),
        time_to_agent_p90=_seconds_pb(group.time_to_agent_p90),
        abandoned=group.abandoned,
        expired=group.expired,
        offers=group.offers,
        offer_accept_rate=group.offer_accept_rate,
        handle_time_mean=_seconds_pb(group.handle_time_mean),
    )


def quality_report_pb(found: QualityReport) -> pool_service_pb2.GetQualityReportResponse:
    """The API's GetQualityReportResponse."""
    return pool_service_pb2.GetQualityReportResponse(
        start_time=timestamp(found.since),
        end_time=timestamp(found.until),
        groups=[quality_group_pb(g) for g in found.groups],
        overall=quality_group_pb(found.overall),
        alerts=[quality_alert_pb(a) for a in found.alerts],
    )


def quality_alert_pb(alert: Alert) -> quality_pb2.QualityAlert:
    """The API's QualityAlert."""
    low, high = alert.observed.wilson()
    return quality_pb2.QualityAlert(
        key=alert.key,
        metric=enum_to_proto(quality_pb2.QualityMetric, "QUALITY_METRIC_", alert.metric),
        reference=enum_to_proto(
            quality_pb2.QualityReference, "QUALITY_REFERENCE_", alert.reference
        ),
        observed=alert.observed.share,
        observed_samples=alert.observed.trials,
        observed_low=low,
        observed_high=high,
        expected=alert.expected.share,
        expected_samples=alert.expected.trials,
        gap=alert.gap,
        p_value=alert.p_value,
        test=alert.test,
    )


# --- the retraining export -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """A validated ExportOutcomes request: what to take, and the window (None: default)."""

    query: OutcomeQuery
    since: datetime | None
    until: datetime | None


def export_query(msg: pool_service_pb2.ExportOutcomesRequest) -> ExportQuery:
    """The validated query of an ExportOutcomes request."""
    v = Violations()
    since = _window_time(v, "start_time", msg)
    until = _window_time(v, "end_time", msg)
    if msg.interaction_type:
        check_identifier(v, "interaction_type", msg.interaction_type)
    outcomes = set()
    for i, number in enumerate(msg.outcomes[:10]):
        outcome = enum_from_proto(
            v, f"outcomes[{i}]", handoff_pb2.Outcome, "OUTCOME_", number, model.Outcome
        )
        if number == 0:
            v.add(f"outcomes[{i}]", "must be an outcome")
        if outcome is not None:
            outcomes.add(outcome)
    if len(msg.outcomes) > 10:
        v.add("outcomes", "must list at most 10")
    if not 0 <= msg.max_csat <= 5:
        v.add("max_csat", "must be between 1 and 5, or 0 for any")
    v.raise_if_any()
    query = OutcomeQuery(
        interaction_type=msg.interaction_type or None,
        outcomes=frozenset(outcomes),
        only_failures=msg.only_failures,
        max_csat=msg.max_csat or None,
    )
    return ExportQuery(query, since, until)


def exported_pb(handoff: model.Handoff) -> pool_service_pb2.ExportOutcomesResponse:
    """One exported outcome."""
    return pool_service_pb2.ExportOutcomesResponse(
        handoff=handoff_pb(HandoffView(handoff, 0, None, None)),
        notes=handoff.completion.notes if handoff.completion is not None else "",
        agent_id=handoff.agent_id or "",
    )
