from humanline.v1 import handoff_pb2 as _handoff_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestHandoffRequest(_message.Message):
    __slots__ = ("request_id", "conversation_id", "customer_id", "interaction_type", "required_skills", "language", "urgency", "summary", "reason", "signals", "preferred_agent_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SKILLS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    conversation_id: str
    customer_id: str
    interaction_type: str
    required_skills: _containers.RepeatedCompositeFieldContainer[_handoff_pb2.SkillRequirement]
    language: str
    urgency: _handoff_pb2.Urgency
    summary: str
    reason: _handoff_pb2.HandoffReason
    signals: _handoff_pb2.RiskSignals
    preferred_agent_id: str
    def __init__(self, request_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., interaction_type: _Optional[str] = ..., required_skills: _Optional[_Iterable[_Union[_handoff_pb2.SkillRequirement, _Mapping]]] = ..., language: _Optional[str] = ..., urgency: _Optional[_Union[_handoff_pb2.Urgency, str]] = ..., summary: _Optional[str] = ..., reason: _Optional[_Union[_handoff_pb2.HandoffReason, str]] = ..., signals: _Optional[_Union[_handoff_pb2.RiskSignals, _Mapping]] = ..., preferred_agent_id: _Optional[str] = ...) -> None: ...

class RequestHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: _handoff_pb2.Handoff
    def __init__(self, handoff: _Optional[_Union[_handoff_pb2.Handoff, _Mapping]] = ...) -> None: ...

class GetHandoffRequest(_message.Message):
    __slots__ = ("handoff_id",)
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    def __init__(self, handoff_id: _Optional[str] = ...) -> None: ...

class GetHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: _handoff_pb2.Handoff
    def __init__(self, handoff: _Optional[_Union[_handoff_pb2.Handoff, _Mapping]] = ...) -> None: ...

class WatchHandoffRequest(_message.Message):
    __slots__ = ("handoff_id",)
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    def __init__(self, handoff_id: _Optional[str] = ...) -> None: ...

class WatchHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: _handoff_pb2.Handoff
    def __init__(self, handoff: _Optional[_Union[_handoff_pb2.Handoff, _Mapping]] = ...) -> None: ...

class CancelHandoffRequest(_message.Message):
    __slots__ = ("handoff_id",)
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    def __init__(self, handoff_id: _Optional[str] = ...) -> None: ...

class CancelHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: _handoff_pb2.Handoff
    def __init__(self, handoff: _Optional[_Union[_handoff_pb2.Handoff, _Mapping]] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("handoff_id", "csat", "reason_tags", "contacted_again")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    CSAT_FIELD_NUMBER: _ClassVar[int]
    REASON_TAGS_FIELD_NUMBER: _ClassVar[int]
    CONTACTED_AGAIN_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    csat: int
    reason_tags: _containers.RepeatedScalarFieldContainer[str]
    contacted_again: bool
    def __init__(self, handoff_id: _Optional[str] = ..., csat: _Optional[int] = ..., reason_tags: _Optional[_Iterable[str]] = ..., contacted_again: _Optional[bool] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: _handoff_pb2.Handoff
    def __init__(self, handoff: _Optional[_Union[_handoff_pb2.Handoff, _Mapping]] = ...) -> None: ...
