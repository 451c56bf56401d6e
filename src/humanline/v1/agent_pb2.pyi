import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATE_UNSPECIFIED: _ClassVar[AgentState]
    AGENT_STATE_OFFLINE: _ClassVar[AgentState]
    AGENT_STATE_AVAILABLE: _ClassVar[AgentState]
    AGENT_STATE_AWAY: _ClassVar[AgentState]
    AGENT_STATE_BUSY: _ClassVar[AgentState]
    AGENT_STATE_RECONNECTING: _ClassVar[AgentState]

class AgentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATUS_UNSPECIFIED: _ClassVar[AgentStatus]
    AGENT_STATUS_AVAILABLE: _ClassVar[AgentStatus]
    AGENT_STATUS_AWAY: _ClassVar[AgentStatus]
AGENT_STATE_UNSPECIFIED: AgentState
AGENT_STATE_OFFLINE: AgentState
AGENT_STATE_AVAILABLE: AgentState
AGENT_STATE_AWAY: AgentState
AGENT_STATE_BUSY: AgentState
AGENT_STATE_RECONNECTING: AgentState
AGENT_STATUS_UNSPECIFIED: AgentStatus
AGENT_STATUS_AVAILABLE: AgentStatus
AGENT_STATUS_AWAY: AgentStatus

class AgentSkill(_message.Message):
    __slots__ = ("skill", "proficiency")
    SKILL_FIELD_NUMBER: _ClassVar[int]
    PROFICIENCY_FIELD_NUMBER: _ClassVar[int]
    skill: str
    proficiency: int
    def __init__(self, skill: _Optional[str] = ..., proficiency: _Optional[int] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("agent_id", "display_name", "skills", "languages", "capacity", "state", "load", "consecutive_misses", "last_assign_time", "create_time", "update_time")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SKILLS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_MISSES_FIELD_NUMBER: _ClassVar[int]
    LAST_ASSIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    display_name: str
    skills: _containers.RepeatedCompositeFieldContainer[AgentSkill]
    languages: _containers.RepeatedScalarFieldContainer[str]
    capacity: int
    state: AgentState
    load: int
    consecutive_misses: int
    last_assign_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, agent_id: _Optional[str] = ..., display_name: _Optional[str] = ..., skills: _Optional[_Iterable[_Union[AgentSkill, _Mapping]]] = ..., languages: _Optional[_Iterable[str]] = ..., capacity: _Optional[int] = ..., state: _Optional[_Union[AgentState, str]] = ..., load: _Optional[int] = ..., consecutive_misses: _Optional[int] = ..., last_assign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
