import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Urgency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    URGENCY_UNSPECIFIED: _ClassVar[Urgency]
    URGENCY_LOW: _ClassVar[Urgency]
    URGENCY_NORMAL: _ClassVar[Urgency]
    URGENCY_HIGH: _ClassVar[Urgency]
    URGENCY_CRITICAL: _ClassVar[Urgency]

class HandoffState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_STATE_UNSPECIFIED: _ClassVar[HandoffState]
    HANDOFF_STATE_QUEUED: _ClassVar[HandoffState]
    HANDOFF_STATE_OFFERED: _ClassVar[HandoffState]
    HANDOFF_STATE_ASSIGNED: _ClassVar[HandoffState]
    HANDOFF_STATE_COMPLETED: _ClassVar[HandoffState]
    HANDOFF_STATE_CANCELLED: _ClassVar[HandoffState]
    HANDOFF_STATE_EXPIRED: _ClassVar[HandoffState]

class HandoffReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_REASON_UNSPECIFIED: _ClassVar[HandoffReason]
    HANDOFF_REASON_CUSTOMER_REQUEST: _ClassVar[HandoffReason]
    HANDOFF_REASON_LOW_CONFIDENCE: _ClassVar[HandoffReason]
    HANDOFF_REASON_POLICY_EXCEPTION: _ClassVar[HandoffReason]
    HANDOFF_REASON_TOOL_FAILURE: _ClassVar[HandoffReason]
    HANDOFF_REASON_REPEATED_CONTACT: _ClassVar[HandoffReason]
    HANDOFF_REASON_OTHER: _ClassVar[HandoffReason]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_RESOLVED: _ClassVar[Outcome]
    OUTCOME_UNRESOLVED: _ClassVar[Outcome]
    OUTCOME_TRANSFERRED: _ClassVar[Outcome]
    OUTCOME_FOLLOW_UP_NEEDED: _ClassVar[Outcome]

class OfferState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFER_STATE_UNSPECIFIED: _ClassVar[OfferState]
    OFFER_STATE_PENDING: _ClassVar[OfferState]
    OFFER_STATE_ACCEPTED: _ClassVar[OfferState]
    OFFER_STATE_DECLINED: _ClassVar[OfferState]
    OFFER_STATE_EXPIRED: _ClassVar[OfferState]
    OFFER_STATE_RESCINDED: _ClassVar[OfferState]
    OFFER_STATE_COMPLETED: _ClassVar[OfferState]
    OFFER_STATE_REVOKED: _ClassVar[OfferState]

class CustomerTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CUSTOMER_TIER_UNSPECIFIED: _ClassVar[CustomerTier]
    CUSTOMER_TIER_STANDARD: _ClassVar[CustomerTier]
    CUSTOMER_TIER_PREMIUM: _ClassVar[CustomerTier]
    CUSTOMER_TIER_VIP: _ClassVar[CustomerTier]
URGENCY_UNSPECIFIED: Urgency
URGENCY_LOW: Urgency
URGENCY_NORMAL: Urgency
URGENCY_HIGH: Urgency
URGENCY_CRITICAL: Urgency
HANDOFF_STATE_UNSPECIFIED: HandoffState
HANDOFF_STATE_QUEUED: HandoffState
HANDOFF_STATE_OFFERED: HandoffState
HANDOFF_STATE_ASSIGNED: HandoffState
HANDOFF_STATE_COMPLETED: HandoffState
HANDOFF_STATE_CANCELLED: HandoffState
HANDOFF_STATE_EXPIRED: HandoffState
HANDOFF_REASON_UNSPECIFIED: HandoffReason
HANDOFF_REASON_CUSTOMER_REQUEST: HandoffReason
HANDOFF_REASON_LOW_CONFIDENCE: HandoffReason
HANDOFF_REASON_POLICY_EXCEPTION: HandoffReason
HANDOFF_REASON_TOOL_FAILURE: HandoffReason
HANDOFF_REASON_REPEATED_CONTACT: HandoffReason
HANDOFF_REASON_OTHER: HandoffReason
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_RESOLVED: Outcome
OUTCOME_UNRESOLVED: Outcome
OUTCOME_TRANSFERRED: Outcome
OUTCOME_FOLLOW_UP_NEEDED: Outcome
OFFER_STATE_UNSPECIFIED: OfferState
OFFER_STATE_PENDING: OfferState
OFFER_STATE_ACCEPTED: OfferState
OFFER_STATE_DECLINED: OfferState
OFFER_STATE_EXPIRED: OfferState
OFFER_STATE_RESCINDED: OfferState
OFFER_STATE_COMPLETED: OfferState
OFFER_STATE_REVOKED: OfferState
CUSTOMER_TIER_UNSPECIFIED: CustomerTier
CUSTOMER_TIER_STANDARD: CustomerTier
CUSTOMER_TIER_PREMIUM: CustomerTier
CUSTOMER_TIER_VIP: CustomerTier

class SkillRequirement(_message.Message):
    __slots__ = ("skill", "min_proficiency", "optional")
    SKILL_FIELD_NUMBER: _ClassVar[int]
    MIN_PROFICIENCY_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    skill: str
    min_proficiency: int
    optional: bool
    def __init__(self, skill: _Optional[str] = ..., min_proficiency: _Optional[int] = ..., optional: _Optional[bool] = ...) -> None: ...

class AssignedAgent(_message.Message):
    __slots__ = ("agent_id", "display_name")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    display_name: str
    def __init__(self, agent_id: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class Handoff(_message.Message):
    __slots__ = ("handoff_id", "request_id", "conversation_id", "customer_id", "interaction_type", "required_skills", "language", "urgency", "summary", "reason", "state", "queue_position", "estimated_wait", "assigned_agent", "create_time", "target_time", "assign_time", "end_time", "requeue_count", "outcome", "disposition_code", "bot_id", "routing", "relaxation_step", "end_reason", "expire_time", "preferred_agent_id", "preferred_agent_wait_end_time", "feedback", "offers")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SKILLS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_WAIT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AGENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TARGET_TIME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEUE_COUNT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_CODE_FIELD_NUMBER: _ClassVar[int]
    BOT_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    RELAXATION_STEP_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_AGENT_WAIT_END_TIME_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    request_id: str
    conversation_id: str
    customer_id: str
    interaction_type: str
    required_skills: _containers.RepeatedCompositeFieldContainer[SkillRequirement]
    language: str
    urgency: Urgency
    summary: str
    reason: HandoffReason
    state: HandoffState
    queue_position: int
    estimated_wait: _duration_pb2.Duration
    assigned_agent: AssignedAgent
    create_time: _timestamp_pb2.Timestamp
    target_time: _timestamp_pb2.Timestamp
    assign_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    requeue_count: int
    outcome: Outcome
    disposition_code: str
    bot_id: str
    routing: str
    relaxation_step: int
    end_reason: str
    expire_time: _timestamp_pb2.Timestamp
    preferred_agent_id: str
    preferred_agent_wait_end_time: _timestamp_pb2.Timestamp
    feedback: Feedback
    offers: _containers.RepeatedCompositeFieldContainer[OfferRecord]
    def __init__(self, handoff_id: _Optional[str] = ..., request_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., interaction_type: _Optional[str] = ..., required_skills: _Optional[_Iterable[_Union[SkillRequirement, _Mapping]]] = ..., language: _Optional[str] = ..., urgency: _Optional[_Union[Urgency, str]] = ..., summary: _Optional[str] = ..., reason: _Optional[_Union[HandoffReason, str]] = ..., state: _Optional[_Union[HandoffState, str]] = ..., queue_position: _Optional[int] = ..., estimated_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., assigned_agent: _Optional[_Union[AssignedAgent, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., target_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., assign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requeue_count: _Optional[int] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., disposition_code: _Optional[str] = ..., bot_id: _Optional[str] = ..., routing: _Optional[str] = ..., relaxation_step: _Optional[int] = ..., end_reason: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., preferred_agent_id: _Optional[str] = ..., preferred_agent_wait_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feedback: _Optional[_Union[Feedback, _Mapping]] = ..., offers: _Optional[_Iterable[_Union[OfferRecord, _Mapping]]] = ...) -> None: ...

class OfferRecord(_message.Message):
    __slots__ = ("offer_id", "agent_id", "state", "offer_time", "decide_time", "ranking")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OFFER_TIME_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    agent_id: str
    state: OfferState
    offer_time: _timestamp_pb2.Timestamp
    decide_time: _timestamp_pb2.Timestamp
    ranking: str
    def __init__(self, offer_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., state: _Optional[_Union[OfferState, str]] = ..., offer_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ranking: _Optional[str] = ...) -> None: ...

class Feedback(_message.Message):
    __slots__ = ("csat", "reason_tags", "contacted_again", "record_time")
    CSAT_FIELD_NUMBER: _ClassVar[int]
    REASON_TAGS_FIELD_NUMBER: _ClassVar[int]
    CONTACTED_AGAIN_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    csat: int
    reason_tags: _containers.RepeatedScalarFieldContainer[str]
    contacted_again: bool
    record_time: _timestamp_pb2.Timestamp
    def __init__(self, csat: _Optional[int] = ..., reason_tags: _Optional[_Iterable[str]] = ..., contacted_again: _Optional[bool] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RiskSignals(_message.Message):
    __slots__ = ("sentiment", "distress", "suspected_fraud", "disputed_amount", "tier", "tenure_days", "bot_confidence")
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    DISTRESS_FIELD_NUMBER: _ClassVar[int]
    SUSPECTED_FRAUD_FIELD_NUMBER: _ClassVar[int]
    DISPUTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    TENURE_DAYS_FIELD_NUMBER: _ClassVar[int]
    BOT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    sentiment: float
    distress: bool
    suspected_fraud: bool
    disputed_amount: float
    tier: CustomerTier
    tenure_days: int
    bot_confidence: float
    def __init__(self, sentiment: _Optional[float] = ..., distress: _Optional[bool] = ..., suspected_fraud: _Optional[bool] = ..., disputed_amount: _Optional[float] = ..., tier: _Optional[_Union[CustomerTier, str]] = ..., tenure_days: _Optional[int] = ..., bot_confidence: _Optional[float] = ...) -> None: ...
