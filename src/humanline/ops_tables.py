"""Tables for people: the pool, the agents, quality and outcomes as rich renderables.

`humanline pool`, `agents`, `quality` and `export` (ops_cli.py) print these; with `--json`
they print `as_json` of the same messages instead.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Group
from rich.table import Table

from humanline.client.connection import enum_name
from humanline.v1 import agent_pb2, handoff_pb2, pool_service_pb2, quality_pb2


def as_json(message: Message) -> dict[str, Any]:
    """A message as protobuf's JSON mapping, with the proto field names and every field
    (zeros too), so a script finds the same keys in every line."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _seconds(value: duration_pb2.Duration) -> float:
    return value.ToTimedelta().total_seconds()


def _wait(value: duration_pb2.Duration, present: bool = True) -> str:
    if not present:
        return "-"
    seconds = _seconds(value)
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _share(message: Message, field: str) -> str:
    return f"{getattr(message, field):.0%}" if message.HasField(field) else "-"


def _when(stamp: timestamp_pb2.Timestamp, present: bool) -> str:
    if not present:
        return "-"
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _state(value: int) -> str:
    return enum_name(agent_pb2.AgentState, "AGENT_STATE_", value)


def _urgency(value: int) -> str:
    return enum_name(handoff_pb2.Urgency, "URGENCY_", value)


STATE_ORDER = ("available", "busy", "away", "reconnecting", "offline")


def pool_tables(status: pool_service_pb2.PoolStatus) -> Group:
    """The pool at a glance: agents by state (in all and per skill), the queue by type and
    urgency with the handoffs at risk, and free capacity per skill and language."""
    snapshot = _when(status.snapshot_time, status.HasField("snapshot_time"))
    states = {_state(s.state): s.count for s in status.agents_by_state}
    agents = Table(title=f"agents at {snapshot} UTC", title_justify="left")
    agents.add_column("skill", no_wrap=True)
    for name in STATE_ORDER:
        agents.add_column(name, justify="right")
    agents.add_row("all", *(str(states.get(name, 0)) for name in STATE_ORDER), style="bold")
    for by_skill in status.agents_by_skill:
        counts = {_state(s.state): s.count for s in by_skill.agents_by_state}
        agents.add_row(by_skill.skill, *(str(counts.get(name, 0)) for name in STATE_ORDER))

    horizon = _wait(status.at_risk_horizon)
    waiting = sum(q.count for q in status.queue_by_interaction_type)
    oldest = _wait(status.oldest_wait, waiting > 0)
    queue = Table(title=f"queue: {waiting} waiting, oldest {oldest}", title_justify="left")
    queue.add_column("interaction type", no_wrap=True)
    queue.add_column("waiting", justify="right")
    queue.add_column("overdue", justify="right")
    queue.add_column(f"due in {horizon}", justify="right")
    risk = {r.interaction_type: r for r in status.at_risk}
    for row in status.queue_by_interaction_type:
        at_risk = risk.get(row.interaction_type)
        overdue = at_risk.overdue if at_risk else 0
        queue.add_row(
            row.interaction_type,
            str(row.count),
            f"[red]{overdue}[/]" if overdue else "0",
            str(at_risk.due_soon if at_risk else 0),
        )
    urgency = ", ".join(
        f"{_urgency(u.urgency)} {u.count}" for u in status.queue_by_urgency if u.count
    )
    if urgency:
        queue.caption, queue.caption_justify = f"by urgency: {urgency}", "left"

    free = Table(title="free capacity", title_justify="left")
    free.add_column("skill or language")
    free.add_column("available agents", justify="right")
    free.add_column("free slots", justify="right")
    for kind, rows in (("skill", status.skills), ("language", status.languages)):
        for slots in rows:
            free.add_row(
                f"{slots.key} ({kind})", str(slots.available_agents), str(slots.free_capacity)
            )
    return Group(agents, queue, free)


def agents_table(agents: list[agent_pb2.Agent]) -> Table:
    """One row per agent: state, load against capacity, skills, languages, last work."""
    table = Table(title=f"{len(agents)} agents", title_justify="left")
    for header in ("agent", "name", "state", "load", "skills", "languages", "last assigned"):
        table.add_column(
            header, justify="right" if header == "load" else "left", no_wrap=header == "agent"
        )
    for agent in agents:
        table.add_row(
            agent.agent_id,
            agent.display_name,
            _state(agent.state),
            f"{agent.load}/{agent.capacity}",
            ", ".join(f"{s.skill} {s.proficiency}" for s in agent.skills),
            ", ".join(agent.languages),
            _when(agent.last_assign_time, agent.HasField("last_assign_time")),
        )
    return table


def quality_tables(report: pool_service_pb2.GetQualityReportResponse, by: str) -> Group:
    """Per group and overall: volume, resolution, CSAT, time to agent, abandonment, offers;
    then the early warnings raised."""
    start = _when(report.start_time, report.HasField("start_time"))
    end = _when(report.end_time, report.HasField("end_time"))
    table = Table(title=f"quality by {by.replace('_', ' ')}, {start} to {end} UTC")
    table.add_column(by.replace("_", " "), no_wrap=True)
    for header in (
        "handoffs",
        "completed",
        "resolved",
        "CSAT",
        "satisfied",
        "in target",
        "to agent p50",
        "p90",
        "abandoned",
        "expired",
        "accepted offers",
        "handle time",
    ):
        table.add_column(header, justify="right")

    def row(group: quality_pb2.QualityGroup, style: str = "") -> None:
        table.add_row(
            group.key,
            str(group.handoffs),
            str(group.completed),
            _share(group, "resolution_rate"),
            f"{group.csat_mean:.2f} ({group.csat_count})" if group.HasField("csat_mean") else "-",
            _share(group, "csat_satisfied"),
            _share(group, "within_target"),
            _wait(group.time_to_agent_p50, group.HasField("time_to_agent_p50")),
            _wait(group.time_to_agent_p90, group.HasField("time_to_agent_p90")),
            _share(group, "abandoned"),
            _share(group, "expired"),
            _share(group, "offer_accept_rate"),
            _wait(group.handle_time_mean, group.HasField("handle_time_mean")),
            style=style,
        )

    for group in report.groups:
        row(group)
    row(report.overall, "bold")
    parts: list[Table] = [table]
    if report.alerts:
        parts.append(alerts_table(list(report.alerts)))
    return Group(*parts)


def alerts_table(alerts: list[quality_pb2.QualityAlert]) -> Table:
    """The early warnings: what fell, against what, by how much and how surely."""
    table = Table(title="[red]early warnings[/]", title_justify="left")
    for header in ("type", "metric", "against", "observed", "95% interval", "expected", "p"):
        table.add_column(header, justify="left" if header in ("type", "metric") else "right")
    for alert in alerts:
        table.add_row(
            alert.key,
            enum_name(quality_pb2.QualityMetric, "QUALITY_METRIC_", alert.metric),
            enum_name(quality_pb2.QualityReference, "QUALITY_REFERENCE_", alert.reference),
            f"{alert.observed:.0%} of {alert.observed_samples}",
            f"{alert.observed_low:.0%}-{alert.observed_high:.0%}",
            f"{alert.expected:.0%} of {alert.expected_samples}",
            f"{alert.p_value:.1e}",
        )
    return table


def export_table(records: list[pool_service_pb2.ExportOutcomesResponse]) -> Table:
    """One row per completed handoff: when, what, who, how it ended, the rating."""
    table = Table(title=f"{len(records)} outcomes", title_justify="left")
    for header in ("completed", "handoff", "type", "agent", "outcome", "disposition", "CSAT"):
        table.add_column(header, no_wrap=header in ("handoff", "type", "agent"))
    for record in records:
        handoff = record.handoff
        table.add_row(
            _when(handoff.end_time, handoff.HasField("end_time")),
            handoff.handoff_id,
            handoff.interaction_type,
            record.agent_id,
            enum_name(handoff_pb2.Outcome, "OUTCOME_", handoff.outcome),
            handoff.disposition_code,
            str(handoff.feedback.csat) if handoff.HasField("feedback") else "-",
        )
    return table
