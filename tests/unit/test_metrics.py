"""Metrics without a server: bounded labels, counting from effects' logs, the setting."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from humanline.config import Settings, parse_listen
from humanline.domain.model import AgentState, Urgency
from humanline.service.metrics import OTHER, LabelCap, Metrics
from humanline.store.port import PoolSnapshot


def test_label_values_are_capped() -> None:
    cap = LabelCap(2)
    assert [cap(t) for t in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_types_past_the_cap_count_as_other() -> None:
    metrics = Metrics(max_types=2)
    for n, kind in enumerate(("a", "b", "c", "d")):
        metrics.record(
            [
                (
                    "handoff_queued",
                    {"handoff_id": str(n), "interaction_type": kind, "urgency": "LOW"},
                )
            ],
            [],
        )
    value = metrics.registry.get_sample_value
    requested = "humanline_handoffs_requested_total"
    assert value(requested, {"interaction_type": "a", "urgency": "LOW"}) == 1
    assert value(requested, {"interaction_type": OTHER, "urgency": "LOW"}) == 2
    metrics.pool.snapshot = PoolSnapshot(
        agents_by_state={AgentState.BUSY: 3},
        skills=[],
        languages=[],
        queue_by_urgency={Urgency.LOW: 7},
        queue_by_type={"a": 1, "x": 2, "y": 4},
        oldest_created_at=None,
    )
    assert value("humanline_queue_depth", {"interaction_type": "a"}) == 1
    assert value("humanline_queue_depth", {"interaction_type": OTHER}) == 6
    assert value("humanline_queue_depth_by_urgency", {"urgency": "LOW"}) == 7
    assert value("humanline_queue_depth_by_urgency", {"urgency": "HIGH"}) == 0
    assert value("humanline_agents", {"state": "BUSY"}) == 3
    assert b"humanline_agents" in generate_latest(metrics.registry)


def test_offers_and_endings_take_the_type_from_the_handoffs_logged() -> None:
    metrics = Metrics()
    metrics.record(
        [
            ("offer_sent", {"handoff_id": "h", "interaction_type": "t", "waited_seconds": 0.3}),
            ("offer_expired", {"handoff_id": "h"}),
            ("handoff_expired", {"handoff_id": "h", "interaction_type": "t"}),
            ("handoff_cancelled", {"handoff_id": "unseen"}),
        ],
        [],
    )
    value = metrics.registry.get_sample_value
    assert value("humanline_offers_total", {"result": "sent"}) == 1
    assert value("humanline_offers_total", {"result": "expired"}) == 1
    assert value("humanline_offers_total", {"result": "declined"}) == 0
    assert value("humanline_time_to_offer_seconds_count", {"interaction_type": "t"}) == 1
    assert (
        value("humanline_time_to_offer_seconds_bucket", {"interaction_type": "t", "le": "0.25"})
        == 0
    )
    ended = "humanline_handoffs_ended_total"
    assert value(ended, {"interaction_type": "t", "outcome": "expired"}) == 1
    assert value(ended, {"interaction_type": "unknown", "outcome": "cancelled"}) == 1


def test_the_setting() -> None:
    assert Settings.model_fields["metrics_listen"].default is None
    assert Settings(metrics_listen="0").metrics_listen is None
    assert Settings(metrics_listen="").metrics_listen is None
    assert Settings(metrics_listen="0.0.0.0:9464").metrics_listen == "0.0.0.0:9464"
    with pytest.raises(ValidationError):
        Settings(metrics_listen="9464x")
    assert parse_listen("[::1]:9464") == ("::1", 9464)
