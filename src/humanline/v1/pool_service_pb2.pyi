import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from humanline.v1 import agent_pb2 as _agent_pb2
from humanline.v1 import handoff_pb2 as _handoff_pb2
from humanline.v1 import quality_pb2 as _quality_pb2
from humanline.v1 import routing_pb2 as _routing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRoutingPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _routing_pb2.RoutingPolicy
    def __init__(self, policy: _Optional[_Union[_routing_pb2.RoutingPolicy, _Mapping]] = ...) -> None: ...

class CreateRoutingPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _routing_pb2.RoutingPolicy
    def __init__(self, policy: _Optional[_Union[_routing_pb2.RoutingPolicy, _Mapping]] = ...) -> None: ...

class UpdateRoutingPolicyRequest(_message.Message):
    __slots__ = ("policy", "update_mask")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    policy: _routing_pb2.RoutingPolicy
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, policy: _Optional[_Union[_routing_pb2.RoutingPolicy, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateRoutingPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _routing_pb2.RoutingPolicy
    def __init__(self, policy: _Optional[_Union[_routing_pb2.RoutingPolicy, _Mapping]] = ...) -> None: ...

class GetRoutingPolicyRequest(_message.Message):
    __slots__ = ("interaction_type",)
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    interaction_type: str
    def __init__(self, interaction_type: _Optional[str] = ...) -> None: ...

class GetRoutingPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _routing_pb2.RoutingPolicy
    def __init__(self, policy: _Optional[_Union[_routing_pb2.RoutingPolicy, _Mapping]] = ...) -> None: ...

class ListRoutingPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRoutingPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[_routing_pb2.RoutingPolicy]
    def __init__(self, policies: _Optional[_Iterable[_Union[_routing_pb2.RoutingPolicy, _Mapping]]] = ...) -> None: ...

class DeleteRoutingPolicyRequest(_message.Message):
    __slots__ = ("interaction_type",)
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    interaction_type: str
    def __init__(self, interaction_type: _Optional[str] = ...) -> None: ...

class DeleteRoutingPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _routing_pb2.RoutingPolicy
    def __init__(self, policy: _Optional[_Union[_routing_pb2.RoutingPolicy, _Mapping]] = ...) -> None: ...

class CreateAgentRequest(_message.Message):
    __slots__ = ("agent_id", "agent")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent: _agent_pb2.Agent
    def __init__(self, agent_id: _Optional[str] = ..., agent: _Optional[_Union[_agent_pb2.Agent, _Mapping]] = ...) -> None: ...

class CreateAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _agent_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_agent_pb2.Agent, _Mapping]] = ...) -> None: ...

class UpdateAgentRequest(_message.Message):
    __slots__ = ("agent", "update_mask")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    agent: _agent_pb2.Agent
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, agent: _Optional[_Union[_agent_pb2.Agent, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _agent_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_agent_pb2.Agent, _Mapping]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class GetAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _agent_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_agent_pb2.Agent, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "skill")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SKILL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _agent_pb2.AgentState
    skill: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_agent_pb2.AgentState, str]] = ..., skill: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_agent_pb2.Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[_agent_pb2.Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class DeleteAgentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPoolStatusRequest(_message.Message):
    __slots__ = ("at_risk_horizon",)
    AT_RISK_HORIZON_FIELD_NUMBER: _ClassVar[int]
    at_risk_horizon: _duration_pb2.Duration
    def __init__(self, at_risk_horizon: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetPoolStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PoolStatus
    def __init__(self, status: _Optional[_Union[PoolStatus, _Mapping]] = ...) -> None: ...

class PoolStatus(_message.Message):
    __slots__ = ("agents_by_state", "skills", "languages", "queue_by_urgency", "queue_by_interaction_type", "oldest_wait", "snapshot_time", "agents_by_skill", "at_risk", "at_risk_horizon")
    AGENTS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    SKILLS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_BY_URGENCY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_BY_INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WAIT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENTS_BY_SKILL_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_HORIZON_FIELD_NUMBER: _ClassVar[int]
    agents_by_state: _containers.RepeatedCompositeFieldContainer[AgentStateCount]
    skills: _containers.RepeatedCompositeFieldContainer[CapacityCount]
    languages: _containers.RepeatedCompositeFieldContainer[CapacityCount]
    queue_by_urgency: _containers.RepeatedCompositeFieldContainer[UrgencyCount]
    queue_by_interaction_type: _containers.RepeatedCompositeFieldContainer[InteractionTypeCount]
    oldest_wait: _duration_pb2.Duration
    snapshot_time: _timestamp_pb2.Timestamp
    agents_by_skill: _containers.RepeatedCompositeFieldContainer[SkillStateCount]
    at_risk: _containers.RepeatedCompositeFieldContainer[AtRiskCount]
    at_risk_horizon: _duration_pb2.Duration
    def __init__(self, agents_by_state: _Optional[_Iterable[_Union[AgentStateCount, _Mapping]]] = ..., skills: _Optional[_Iterable[_Union[CapacityCount, _Mapping]]] = ..., languages: _Optional[_Iterable[_Union[CapacityCount, _Mapping]]] = ..., queue_by_urgency: _Optional[_Iterable[_Union[UrgencyCount, _Mapping]]] = ..., queue_by_interaction_type: _Optional[_Iterable[_Union[InteractionTypeCount, _Mapping]]] = ..., oldest_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., snapshot_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agents_by_skill: _Optional[_Iterable[_Union[SkillStateCount, _Mapping]]] = ..., at_risk: _Optional[_Iterable[_Union[AtRiskCount, _Mapping]]] = ..., at_risk_horizon: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SkillStateCount(_message.Message):
    __slots__ = ("skill", "agents_by_state")
    SKILL_FIELD_NUMBER: _ClassVar[int]
    AGENTS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    skill: str
    agents_by_state: _containers.RepeatedCompositeFieldContainer[AgentStateCount]
    def __init__(self, skill: _Optional[str] = ..., agents_by_state: _Optional[_Iterable[_Union[AgentStateCount, _Mapping]]] = ...) -> None: ...

class AtRiskCount(_message.Message):
    __slots__ = ("interaction_type", "overdue", "due_soon")
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    DUE_SOON_FIELD_NUMBER: _ClassVar[int]
    interaction_type: str
    overdue: int
    due_soon: int
    def __init__(self, interaction_type: _Optional[str] = ..., overdue: _Optional[int] = ..., due_soon: _Optional[int] = ...) -> None: ...

class AgentStateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: _agent_pb2.AgentState
    count: int
    def __init__(self, state: _Optional[_Union[_agent_pb2.AgentState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class CapacityCount(_message.Message):
    __slots__ = ("key", "available_agents", "free_capacity")
    KEY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AGENTS_FIELD_NUMBER: _ClassVar[int]
    FREE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    key: str
    available_agents: int
    free_capacity: int
    def __init__(self, key: _Optional[str] = ..., available_agents: _Optional[int] = ..., free_capacity: _Optional[int] = ...) -> None: ...

class UrgencyCount(_message.Message):
    __slots__ = ("urgency", "count")
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    urgency: _handoff_pb2.Urgency
    count: int
    def __init__(self, urgency: _Optional[_Union[_handoff_pb2.Urgency, str]] = ..., count: _Optional[int] = ...) -> None: ...

class InteractionTypeCount(_message.Message):
    __slots__ = ("interaction_type", "count")
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    interaction_type: str
    count: int
    def __init__(self, interaction_type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class WatchPoolStatusRequest(_message.Message):
    __slots__ = ("at_risk_horizon", "min_interval")
    AT_RISK_HORIZON_FIELD_NUMBER: _ClassVar[int]
    MIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    at_risk_horizon: _duration_pb2.Duration
    min_interval: _duration_pb2.Duration
    def __init__(self, at_risk_horizon: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchPoolStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PoolStatus
    def __init__(self, status: _Optional[_Union[PoolStatus, _Mapping]] = ...) -> None: ...

class GetQualityReportRequest(_message.Message):
    __slots__ = ("group_by", "start_time", "end_time", "interaction_type")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    group_by: _quality_pb2.QualityDimension
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    interaction_type: str
    def __init__(self, group_by: _Optional[_Union[_quality_pb2.QualityDimension, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interaction_type: _Optional[str] = ...) -> None: ...

class GetQualityReportResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "groups", "overall", "alerts")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    groups: _containers.RepeatedCompositeFieldContainer[_quality_pb2.QualityGroup]
    overall: _quality_pb2.QualityGroup
    alerts: _containers.RepeatedCompositeFieldContainer[_quality_pb2.QualityAlert]
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[_quality_pb2.QualityGroup, _Mapping]]] = ..., overall: _Optional[_Union[_quality_pb2.QualityGroup, _Mapping]] = ..., alerts: _Optional[_Iterable[_Union[_quality_pb2.QualityAlert, _Mapping]]] = ...) -> None: ...

class WatchQualityAlertsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchQualityAlertsResponse(_message.Message):
    __slots__ = ("alert", "cleared", "event_time")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    alert: _quality_pb2.QualityAlert
    cleared: bool
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, alert: _Optional[_Union[_quality_pb2.QualityAlert, _Mapping]] = ..., cleared: _Optional[bool] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportOutcomesRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "interaction_type", "outcomes", "only_failures", "max_csat")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    ONLY_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAX_CSAT_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    interaction_type: str
    outcomes: _containers.RepeatedScalarFieldContainer[_handoff_pb2.Outcome]
    only_failures: bool
    max_csat: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interaction_type: _Optional[str] = ..., outcomes: _Optional[_Iterable[_Union[_handoff_pb2.Outcome, str]]] = ..., only_failures: _Optional[bool] = ..., max_csat: _Optional[int] = ...) -> None: ...

class ExportOutcomesResponse(_message.Message):
    __slots__ = ("handoff", "notes", "agent_id")
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    handoff: _handoff_pb2.Handoff
    notes: str
    agent_id: str
    def __init__(self, handoff: _Optional[_Union[_handoff_pb2.Handoff, _Mapping]] = ..., notes: _Optional[str] = ..., agent_id: _Optional[str] = ...) -> None: ...
