"""The simulator in a terminal: a progress bar while it runs, tables at the end (rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from humanline.sim.report import ALL, Compared, Detection, Summary
from humanline.sim.runner import Progress as RunProgress


def console(*, stderr: bool = False) -> Console:
    """A console for the tables; 120 columns wide when not a terminal (a file, a pipe)."""
    plain = Console(stderr=stderr)
    return plain if plain.is_terminal else Console(stderr=stderr, width=120)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _pair(values: tuple[float | None, float | None], show: Callable[[float | None], str]) -> str:
    return f"{show(values[0])} → {show(values[1])}"


def comparison_table(rows: list[Compared]) -> Table:
    """Two runs of a scenario side by side, per interaction type: before → after."""
    table = Table(title="before (topic and urgency) → after (risk policies), per interaction type")
    # Names and values whole, each row on one line: headers wrap instead.
    table.add_column(
        "type", no_wrap=True, min_width=max((len(r.interaction_type) for r in rows), default=4)
    )
    table.add_column("risk", no_wrap=True)
    for header in (
        "handoffs",
        "offered\nin target",
        "…to a\nproficient",
        "to agent\np90 s",
        "over max\nwait",
        "aban-\ndoned",
        "ex-\npired",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.interaction_type,
            row.risk.lower(),
            f"{row.handoffs[0]} / {row.handoffs[1]}",
            _pair(row.offered_in_target, _share),
            _pair(row.proficient_in_target, _share),
            _pair(row.time_to_agent_p90, _seconds),
            _pair(row.over_max_wait, _share),
            _pair(row.abandoned, _share),
            _pair(row.expired, _share),
            style="bold" if row.interaction_type == ALL else None,
        )
    return table


def _flagged(after: float | None) -> str:
    return "never" if after is None else f"{after:.1f}"


def _until(count: int | None, since: int) -> str:
    return f"never ({since} since)" if count is None else str(count)


def detection_table(found: list[Detection], quiet: int | None, false: int) -> Table:
    """How soon the server's early warning flagged each quality drop, for its resolution rate
    and for its CSAT, after how many completions and ratings since the drop (to the first
    flag), and the false alarms: flags on types no change touched in this run (`false`), and
    in a run without the drop (`quiet`, if there was one)."""
    alarms = f"{false} on other types" + ("" if quiet is None else f", {quiet} without the drop")
    table = Table(title=f"early warning of quality drops (false alarms: {alarms})")
    for header in (
        "type",
        "dropped\nat s",
        "resolve",
        "satisfied\n(4-5)",
        "flagged after s:\nresolution / CSAT",
        "completions to\nthe first flag",
        "ratings to\nthe first flag",
    ):
        table.add_column(header, justify="left" if header == "type" else "right")
    for d in found:
        table.add_row(
            d.interaction_type,
            f"{d.changed_at:.0f}",
            f"{d.resolve_before:.0%} → {d.resolve_after:.0%}",
            f"{d.satisfied_before:.0%} → {d.satisfied_after:.0%}",
            f"{_flagged(d.resolution_flagged_after)} / {_flagged(d.csat_flagged_after)}",
            _until(d.completions_until_flag, d.completions_after_change),
            _until(d.ratings_until_flag, d.ratings_after_change),
        )
    return table


def tables(summary: Summary) -> list[Table]:
    """Per interaction type and urgency, the customers' ratings per type, then agent
    occupancy."""
    handoffs = Table(title=f"{summary.scenario}: handoffs by interaction type and urgency")
    handoffs.add_column("type / urgency")
    for header in (
        "handoffs",
        "answered",
        "to agent s\np50/p90/p99",
        "in\ntarget",
        "aban-\ndoned",
        "ex-\npired",
        "estimate\noff p50 s",
        "still\nwaiting",
        "offers\ndeclined",
        "offers\nmissed",
    ):
        handoffs.add_column(header, justify="right")
    for row in summary.rows:
        total = row.urgency == ALL
        waits = "/".join(
            _seconds(v)
            for v in (row.time_to_agent_p50, row.time_to_agent_p90, row.time_to_agent_p99)
        )
        handoffs.add_row(
            row.interaction_type if total else f"  {row.urgency.lower()}",
            str(row.handoffs),
            str(row.answered),
            waits,
            _share(row.within_target),
            _share(row.abandoned),
            _share(row.expired),
            _seconds(row.estimate_error_p50),
            str(row.unfinished),
            str(row.offers_declined),
            str(row.offers_missed),
            style="bold" if total else None,
        )
    occupancy = Table(title="agent occupancy (busy slot-time over logged-in slot-time)")
    for header in ("group", "agents", "logged in, agent-minutes", "occupancy"):
        occupancy.add_column(header, justify="left" if header == "group" else "right")
    for o in summary.occupancy:
        occupancy.add_row(
            o.group,
            str(o.agents),
            f"{o.online_seconds / 60:.1f}",
            _share(o.occupancy),
            style="bold" if o.group == ALL else None,
        )
    ratings = Table(title="customers' ratings (CSAT 1-5) by interaction type")
    for header in ("type", "answered", "rated", "CSAT mean", "satisfied (4-5)"):
        ratings.add_column(header, justify="left" if header == "type" else "right")
    for row in summary.rows:
        if row.urgency == ALL:
            ratings.add_row(
                row.interaction_type,
                str(row.answered),
                str(row.ratings),
                "-" if row.csat_mean is None else f"{row.csat_mean:.2f}",
                _share(row.satisfied),
                style="bold" if row.interaction_type == ALL else None,
            )
    result = [handoffs, ratings, occupancy]
    if summary.errors:
        errors = Table(title="calls that failed")
        errors.add_column("call")
        errors.add_column("count", justify="right")
        for call, count in sorted(summary.errors.items()):
            errors.add_row(call, str(count))
        result.append(errors)
    return result


@contextmanager
def progress_bar(
    console: Console, duration: float, enabled: bool = True
) -> Iterator[Callable[[RunProgress], None]]:
    """A progress bar over the arrivals, then a line for the drain; yields the callback."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not enabled,
        transient=True,
    )
    task = bar.add_task("arrivals", total=duration, status="")

    def update(p: RunProgress) -> None:
        sample = p.sample
        status = f"requested {p.requested}"
        if sample is not None:
            status += (
                f" | queued {sample.queued} | available agents {sample.available_agents}"
                f" | oldest wait {sample.oldest_wait:.0f} s"
            )
        bar.update(
            task,
            completed=min(p.elapsed, duration),
            description="arrivals" if p.phase == "arrivals" else "draining",
            status=status,
        )

    with bar:
        yield update
