import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QualityDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_DIMENSION_UNSPECIFIED: _ClassVar[QualityDimension]
    QUALITY_DIMENSION_INTERACTION_TYPE: _ClassVar[QualityDimension]
    QUALITY_DIMENSION_AGENT: _ClassVar[QualityDimension]
    QUALITY_DIMENSION_SKILL: _ClassVar[QualityDimension]
    QUALITY_DIMENSION_RISK_CLASS: _ClassVar[QualityDimension]

class QualityMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_METRIC_UNSPECIFIED: _ClassVar[QualityMetric]
    QUALITY_METRIC_RESOLUTION_RATE: _ClassVar[QualityMetric]
    QUALITY_METRIC_CSAT_SATISFIED: _ClassVar[QualityMetric]

class QualityReference(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_REFERENCE_UNSPECIFIED: _ClassVar[QualityReference]
    QUALITY_REFERENCE_POOL: _ClassVar[QualityReference]
    QUALITY_REFERENCE_BASELINE: _ClassVar[QualityReference]
QUALITY_DIMENSION_UNSPECIFIED: QualityDimension
QUALITY_DIMENSION_INTERACTION_TYPE: QualityDimension
QUALITY_DIMENSION_AGENT: QualityDimension
QUALITY_DIMENSION_SKILL: QualityDimension
QUALITY_DIMENSION_RISK_CLASS: QualityDimension
QUALITY_METRIC_UNSPECIFIED: QualityMetric
QUALITY_METRIC_RESOLUTION_RATE: QualityMetric
QUALITY_METRIC_CSAT_SATISFIED: QualityMetric
QUALITY_REFERENCE_UNSPECIFIED: QualityReference
QUALITY_REFERENCE_POOL: QualityReference
QUALITY_REFERENCE_BASELINE: QualityReference

class QualityGroup(_message.Message):
    __slots__ = ("key", "handoffs", "completed", "resolved", "resolution_rate", "csat_count", "csat_mean", "csat_counts", "csat_satisfied", "within_target", "time_to_agent_p50", "time_to_agent_p90", "abandoned", "expired", "offers", "offer_accept_rate", "handle_time_mean")
    KEY_FIELD_NUMBER: _ClassVar[int]
    HANDOFFS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_RATE_FIELD_NUMBER: _ClassVar[int]
    CSAT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CSAT_MEAN_FIELD_NUMBER: _ClassVar[int]
    CSAT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    CSAT_SATISFIED_FIELD_NUMBER: _ClassVar[int]
    WITHIN_TARGET_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_AGENT_P50_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_AGENT_P90_FIELD_NUMBER: _ClassVar[int]
    ABANDONED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    OFFER_ACCEPT_RATE_FIELD_NUMBER: _ClassVar[int]
    HANDLE_TIME_MEAN_FIELD_NUMBER: _ClassVar[int]
    key: str
    handoffs: int
    completed: int
    resolved: int
    resolution_rate: float
    csat_count: int
    csat_mean: float
    csat_counts: _containers.RepeatedScalarFieldContainer[int]
    csat_satisfied: float
    within_target: float
    time_to_agent_p50: _duration_pb2.Duration
    time_to_agent_p90: _duration_pb2.Duration
    abandoned: float
    expired: float
    offers: int
    offer_accept_rate: float
    handle_time_mean: _duration_pb2.Duration
    def __init__(self, key: _Optional[str] = ..., handoffs: _Optional[int] = ..., completed: _Optional[int] = ..., resolved: _Optional[int] = ..., resolution_rate: _Optional[float] = ..., csat_count: _Optional[int] = ..., csat_mean: _Optional[float] = ..., csat_counts: _Optional[_Iterable[int]] = ..., csat_satisfied: _Optional[float] = ..., within_target: _Optional[float] = ..., time_to_agent_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., time_to_agent_p90: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., abandoned: _Optional[float] = ..., expired: _Optional[float] = ..., offers: _Optional[int] = ..., offer_accept_rate: _Optional[float] = ..., handle_time_mean: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class QualityAlert(_message.Message):
    __slots__ = ("key", "metric", "reference", "observed", "observed_samples", "observed_low", "observed_high", "expected", "expected_samples", "gap", "p_value", "test")
    KEY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_LOW_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_HIGH_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    key: str
    metric: QualityMetric
    reference: QualityReference
    observed: float
    observed_samples: int
    observed_low: float
    observed_high: float
    expected: float
    expected_samples: int
    gap: float
    p_value: float
    test: str
    def __init__(self, key: _Optional[str] = ..., metric: _Optional[_Union[QualityMetric, str]] = ..., reference: _Optional[_Union[QualityReference, str]] = ..., observed: _Optional[float] = ..., observed_samples: _Optional[int] = ..., observed_low: _Optional[float] = ..., observed_high: _Optional[float] = ..., expected: _Optional[float] = ..., expected_samples: _Optional[int] = ..., gap: _Optional[float] = ..., p_value: _Optional[float] = ..., test: _Optional[str] = ...) -> None: ...
