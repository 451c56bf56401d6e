import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import code_pb2 as _code_pb2
from humanline.v1 import agent_pb2 as _agent_pb2
from humanline.v1 import handoff_pb2 as _handoff_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeclineReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECLINE_REASON_UNSPECIFIED: _ClassVar[DeclineReason]
    DECLINE_REASON_BUSY: _ClassVar[DeclineReason]
    DECLINE_REASON_NOT_QUALIFIED: _ClassVar[DeclineReason]
    DECLINE_REASON_LANGUAGE: _ClassVar[DeclineReason]
    DECLINE_REASON_ENDING_SHIFT: _ClassVar[DeclineReason]
    DECLINE_REASON_OTHER: _ClassVar[DeclineReason]

class RescindReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESCIND_REASON_UNSPECIFIED: _ClassVar[RescindReason]
    RESCIND_REASON_EXPIRED: _ClassVar[RescindReason]
    RESCIND_REASON_DECLINED: _ClassVar[RescindReason]
    RESCIND_REASON_HANDOFF_CANCELLED: _ClassVar[RescindReason]
    RESCIND_REASON_SESSION_ENDED: _ClassVar[RescindReason]
    RESCIND_REASON_AGENT_AWAY: _ClassVar[RescindReason]

class StatusChangeReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_CHANGE_REASON_UNSPECIFIED: _ClassVar[StatusChangeReason]
    STATUS_CHANGE_REASON_AGENT_REQUEST: _ClassVar[StatusChangeReason]
    STATUS_CHANGE_REASON_MISSED_OFFERS: _ClassVar[StatusChangeReason]
DECLINE_REASON_UNSPECIFIED: DeclineReason
DECLINE_REASON_BUSY: DeclineReason
DECLINE_REASON_NOT_QUALIFIED: DeclineReason
DECLINE_REASON_LANGUAGE: DeclineReason
DECLINE_REASON_ENDING_SHIFT: DeclineReason
DECLINE_REASON_OTHER: DeclineReason
RESCIND_REASON_UNSPECIFIED: RescindReason
RESCIND_REASON_EXPIRED: RescindReason
RESCIND_REASON_DECLINED: RescindReason
RESCIND_REASON_HANDOFF_CANCELLED: RescindReason
RESCIND_REASON_SESSION_ENDED: RescindReason
RESCIND_REASON_AGENT_AWAY: RescindReason
STATUS_CHANGE_REASON_UNSPECIFIED: StatusChangeReason
STATUS_CHANGE_REASON_AGENT_REQUEST: StatusChangeReason
STATUS_CHANGE_REASON_MISSED_OFFERS: StatusChangeReason

class ConnectRequest(_message.Message):
    __slots__ = ("command_id", "hello", "resume", "set_status", "accept_offer", "decline_offer", "heartbeat")
    class Hello(_message.Message):
        __slots__ = ("agent_id", "initial_status")
        AGENT_ID_FIELD_NUMBER: _ClassVar[int]
        INITIAL_STATUS_FIELD_NUMBER: _ClassVar[int]
        agent_id: str
        initial_status: _agent_pb2.AgentStatus
        def __init__(self, agent_id: _Optional[str] = ..., initial_status: _Optional[_Union[_agent_pb2.AgentStatus, str]] = ...) -> None: ...
    class Resume(_message.Message):
        __slots__ = ("agent_id", "resume_token")
        AGENT_ID_FIELD_NUMBER: _ClassVar[int]
        RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
        agent_id: str
        resume_token: str
        def __init__(self, agent_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...
    class SetStatus(_message.Message):
        __slots__ = ("status",)
        STATUS_FIELD_NUMBER: _ClassVar[int]
        status: _agent_pb2.AgentStatus
        def __init__(self, status: _Optional[_Union[_agent_pb2.AgentStatus, str]] = ...) -> None: ...
    class AcceptOffer(_message.Message):
        __slots__ = ("offer_id",)
        OFFER_ID_FIELD_NUMBER: _ClassVar[int]
        offer_id: str
        def __init__(self, offer_id: _Optional[str] = ...) -> None: ...
    class DeclineOffer(_message.Message):
        __slots__ = ("offer_id", "reason")
        OFFER_ID_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        offer_id: str
        reason: DeclineReason
        def __init__(self, offer_id: _Optional[str] = ..., reason: _Optional[_Union[DeclineReason, str]] = ...) -> None: ...
    class Heartbeat(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    SET_STATUS_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_OFFER_FIELD_NUMBER: _ClassVar[int]
    DECLINE_OFFER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    hello: ConnectRequest.Hello
    resume: ConnectRequest.Resume
    set_status: ConnectRequest.SetStatus
    accept_offer: ConnectRequest.AcceptOffer
    decline_offer: ConnectRequest.DeclineOffer
    heartbeat: ConnectRequest.Heartbeat
    def __init__(self, command_id: _Optional[str] = ..., hello: _Optional[_Union[ConnectRequest.Hello, _Mapping]] = ..., resume: _Optional[_Union[ConnectRequest.Resume, _Mapping]] = ..., set_status: _Optional[_Union[ConnectRequest.SetStatus, _Mapping]] = ..., accept_offer: _Optional[_Union[ConnectRequest.AcceptOffer, _Mapping]] = ..., decline_offer: _Optional[_Union[ConnectRequest.DeclineOffer, _Mapping]] = ..., heartbeat: _Optional[_Union[ConnectRequest.Heartbeat, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("command_id", "welcome", "offer", "offer_rescinded", "assignment_confirmed", "status_changed", "heartbeat", "command_rejected", "drain")
    class Welcome(_message.Message):
        __slots__ = ("session_id", "resume_token", "heartbeat_interval", "grace_period", "resumed", "agent", "active_interactions")
        SESSION_ID_FIELD_NUMBER: _ClassVar[int]
        RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
        HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
        GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
        RESUMED_FIELD_NUMBER: _ClassVar[int]
        AGENT_FIELD_NUMBER: _ClassVar[int]
        ACTIVE_INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
        session_id: str
        resume_token: str
        heartbeat_interval: _duration_pb2.Duration
        grace_period: _duration_pb2.Duration
        resumed: bool
        agent: _agent_pb2.Agent
        active_interactions: _containers.RepeatedCompositeFieldContainer[Interaction]
        def __init__(self, session_id: _Optional[str] = ..., resume_token: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., resumed: _Optional[bool] = ..., agent: _Optional[_Union[_agent_pb2.Agent, _Mapping]] = ..., active_interactions: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ...) -> None: ...
    class OfferRescinded(_message.Message):
        __slots__ = ("offer_id", "reason")
        OFFER_ID_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        offer_id: str
        reason: RescindReason
        def __init__(self, offer_id: _Optional[str] = ..., reason: _Optional[_Union[RescindReason, str]] = ...) -> None: ...
    class AssignmentConfirmed(_message.Message):
        __slots__ = ("interaction",)
        INTERACTION_FIELD_NUMBER: _ClassVar[int]
        interaction: Interaction
        def __init__(self, interaction: _Optional[_Union[Interaction, _Mapping]] = ...) -> None: ...
    class StatusChanged(_message.Message):
        __slots__ = ("status", "reason")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        status: _agent_pb2.AgentStatus
        reason: StatusChangeReason
        def __init__(self, status: _Optional[_Union[_agent_pb2.AgentStatus, str]] = ..., reason: _Optional[_Union[StatusChangeReason, str]] = ...) -> None: ...
    class Heartbeat(_message.Message):
        __slots__ = ("server_time",)
        SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
        server_time: _timestamp_pb2.Timestamp
        def __init__(self, server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class Drain(_message.Message):
        __slots__ = ("resume_before",)
        RESUME_BEFORE_FIELD_NUMBER: _ClassVar[int]
        resume_before: _timestamp_pb2.Timestamp
        def __init__(self, resume_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class CommandRejected(_message.Message):
        __slots__ = ("code", "message", "reason", "metadata")
        class MetadataEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        CODE_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        code: _code_pb2.Code
        message: str
        reason: str
        metadata: _containers.ScalarMap[str, str]
        def __init__(self, code: _Optional[_Union[_code_pb2.Code, str]] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    OFFER_RESCINDED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_REJECTED_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    welcome: ConnectResponse.Welcome
    offer: Offer
    offer_rescinded: ConnectResponse.OfferRescinded
    assignment_confirmed: ConnectResponse.AssignmentConfirmed
    status_changed: ConnectResponse.StatusChanged
    heartbeat: ConnectResponse.Heartbeat
    command_rejected: ConnectResponse.CommandRejected
    drain: ConnectResponse.Drain
    def __init__(self, command_id: _Optional[str] = ..., welcome: _Optional[_Union[ConnectResponse.Welcome, _Mapping]] = ..., offer: _Optional[_Union[Offer, _Mapping]] = ..., offer_rescinded: _Optional[_Union[ConnectResponse.OfferRescinded, _Mapping]] = ..., assignment_confirmed: _Optional[_Union[ConnectResponse.AssignmentConfirmed, _Mapping]] = ..., status_changed: _Optional[_Union[ConnectResponse.StatusChanged, _Mapping]] = ..., heartbeat: _Optional[_Union[ConnectResponse.Heartbeat, _Mapping]] = ..., command_rejected: _Optional[_Union[ConnectResponse.CommandRejected, _Mapping]] = ..., drain: _Optional[_Union[ConnectResponse.Drain, _Mapping]] = ...) -> None: ...

class InteractionDetails(_message.Message):
    __slots__ = ("handoff_id", "conversation_id", "customer_id", "interaction_type", "urgency", "summary", "reason", "required_skills", "language", "create_time", "requeue_count")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SKILLS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEUE_COUNT_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    conversation_id: str
    customer_id: str
    interaction_type: str
    urgency: _handoff_pb2.Urgency
    summary: str
    reason: _handoff_pb2.HandoffReason
    required_skills: _containers.RepeatedCompositeFieldContainer[_handoff_pb2.SkillRequirement]
    language: str
    create_time: _timestamp_pb2.Timestamp
    requeue_count: int
    def __init__(self, handoff_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., interaction_type: _Optional[str] = ..., urgency: _Optional[_Union[_handoff_pb2.Urgency, str]] = ..., summary: _Optional[str] = ..., reason: _Optional[_Union[_handoff_pb2.HandoffReason, str]] = ..., required_skills: _Optional[_Iterable[_Union[_handoff_pb2.SkillRequirement, _Mapping]]] = ..., language: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requeue_count: _Optional[int] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "details", "offer_time", "expire_time")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    OFFER_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    details: InteractionDetails
    offer_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, offer_id: _Optional[str] = ..., details: _Optional[_Union[InteractionDetails, _Mapping]] = ..., offer_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("interaction_id", "details", "accept_time", "complete_time", "handle_time", "outcome", "disposition_code")
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    HANDLE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_CODE_FIELD_NUMBER: _ClassVar[int]
    interaction_id: str
    details: InteractionDetails
    accept_time: _timestamp_pb2.Timestamp
    complete_time: _timestamp_pb2.Timestamp
    handle_time: _duration_pb2.Duration
    outcome: _handoff_pb2.Outcome
    disposition_code: str
    def __init__(self, interaction_id: _Optional[str] = ..., details: _Optional[_Union[InteractionDetails, _Mapping]] = ..., accept_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., handle_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., outcome: _Optional[_Union[_handoff_pb2.Outcome, str]] = ..., disposition_code: _Optional[str] = ...) -> None: ...

class CompleteInteractionRequest(_message.Message):
    __slots__ = ("agent_id", "interaction_id", "outcome", "disposition_code", "notes")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_CODE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    interaction_id: str
    outcome: _handoff_pb2.Outcome
    disposition_code: str
    notes: str
    def __init__(self, agent_id: _Optional[str] = ..., interaction_id: _Optional[str] = ..., outcome: _Optional[_Union[_handoff_pb2.Outcome, str]] = ..., disposition_code: _Optional[str] = ..., notes: _Optional[str] = ...) -> None: ...

class CompleteInteractionResponse(_message.Message):
    __slots__ = ("interaction",)
    INTERACTION_FIELD_NUMBER: _ClassVar[int]
    interaction: Interaction
    def __init__(self, interaction: _Optional[_Union[Interaction, _Mapping]] = ...) -> None: ...
