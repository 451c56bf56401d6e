import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from humanline.v1 import handoff_pb2 as _handoff_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RiskClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_CLASS_UNSPECIFIED: _ClassVar[RiskClass]
    RISK_CLASS_LOW: _ClassVar[RiskClass]
    RISK_CLASS_MEDIUM: _ClassVar[RiskClass]
    RISK_CLASS_HIGH: _ClassVar[RiskClass]

class AgentOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_ORDER_UNSPECIFIED: _ClassVar[AgentOrder]
    AGENT_ORDER_MOST_PROFICIENT: _ClassVar[AgentOrder]
    AGENT_ORDER_LEAST_EXPERT: _ClassVar[AgentOrder]

class PolicySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_SOURCE_UNSPECIFIED: _ClassVar[PolicySource]
    POLICY_SOURCE_BUILT_IN: _ClassVar[PolicySource]
    POLICY_SOURCE_FILE: _ClassVar[PolicySource]
    POLICY_SOURCE_API: _ClassVar[PolicySource]
RISK_CLASS_UNSPECIFIED: RiskClass
RISK_CLASS_LOW: RiskClass
RISK_CLASS_MEDIUM: RiskClass
RISK_CLASS_HIGH: RiskClass
AGENT_ORDER_UNSPECIFIED: AgentOrder
AGENT_ORDER_MOST_PROFICIENT: AgentOrder
AGENT_ORDER_LEAST_EXPERT: AgentOrder
POLICY_SOURCE_UNSPECIFIED: PolicySource
POLICY_SOURCE_BUILT_IN: PolicySource
POLICY_SOURCE_FILE: PolicySource
POLICY_SOURCE_API: PolicySource

class RelaxationStep(_message.Message):
    __slots__ = ("after", "min_proficiency", "drop_optional")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    MIN_PROFICIENCY_FIELD_NUMBER: _ClassVar[int]
    DROP_OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    after: _duration_pb2.Duration
    min_proficiency: int
    drop_optional: bool
    def __init__(self, after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_proficiency: _Optional[int] = ..., drop_optional: _Optional[bool] = ...) -> None: ...

class RoutingPolicy(_message.Message):
    __slots__ = ("interaction_type", "target", "required_skills", "min_proficiency", "risk_class", "offer_timeout", "max_wait", "relaxation", "quality_ranking", "known_agent_wait", "agent_order", "expert_level", "expert_delay", "source", "create_time", "update_time")
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SKILLS_FIELD_NUMBER: _ClassVar[int]
    MIN_PROFICIENCY_FIELD_NUMBER: _ClassVar[int]
    RISK_CLASS_FIELD_NUMBER: _ClassVar[int]
    OFFER_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    RELAXATION_FIELD_NUMBER: _ClassVar[int]
    QUALITY_RANKING_FIELD_NUMBER: _ClassVar[int]
    KNOWN_AGENT_WAIT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ORDER_FIELD_NUMBER: _ClassVar[int]
    EXPERT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXPERT_DELAY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    interaction_type: str
    target: _duration_pb2.Duration
    required_skills: _containers.RepeatedCompositeFieldContainer[_handoff_pb2.SkillRequirement]
    min_proficiency: int
    risk_class: RiskClass
    offer_timeout: _duration_pb2.Duration
    max_wait: _duration_pb2.Duration
    relaxation: _containers.RepeatedCompositeFieldContainer[RelaxationStep]
    quality_ranking: bool
    known_agent_wait: _duration_pb2.Duration
    agent_order: AgentOrder
    expert_level: int
    expert_delay: _duration_pb2.Duration
    source: PolicySource
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, interaction_type: _Optional[str] = ..., target: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., required_skills: _Optional[_Iterable[_Union[_handoff_pb2.SkillRequirement, _Mapping]]] = ..., min_proficiency: _Optional[int] = ..., risk_class: _Optional[_Union[RiskClass, str]] = ..., offer_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., relaxation: _Optional[_Iterable[_Union[RelaxationStep, _Mapping]]] = ..., quality_ranking: _Optional[bool] = ..., known_agent_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., agent_order: _Optional[_Union[AgentOrder, str]] = ..., expert_level: _Optional[int] = ..., expert_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., source: _Optional[_Union[PolicySource, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
