"""The bench's goals, and its results as a table (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

GOALS: dict[str, float] = {
    # Ratios to the ceilings measured in the same run, so that they hold on any machine:
    # lifecycles/s as a share of the bare RPCs' (`bare_ratio`), at least this.
    "bare_ratio_min_sqlite": 0.6,
    "bare_ratio_min_postgres": 0.35,
    "round_trips_per_lifecycle_max_postgres": 8,
    # Time to offer p99 at 200 handoffs/s, at most this many times the bare RPCs' at that rate.
    "time_to_offer_p99_bare_ratio_max": 3,
    "streams_rss_mib_max": 1024,  # for each count measured, up to 10,000 agents
    # The time to offer p99 with many agents connected, at most this many times its value
    # with the fewest (1,000 in a full run).
    "streams_time_to_offer_p99_growth_max": 2,
}


def number(value: float | None, digits: int = 1) -> str:
    """A measured value for people: thousands separated, "-" for none."""
    return "-" if value is None else f"{value:,.{digits}f}"


def _goal(value: float | None, bound: float, at_least: bool, digits: int = 0) -> str:
    sign = ">=" if at_least else "<="
    text = f"{sign} {bound:,.{digits}f}"
    if value is None:
        return text
    met = value >= bound if at_least else value <= bound
    return f"{text} {'[green]met[/]' if met else '[red]not met[/]'}"


def table(results: dict[str, Any]) -> Table:
    """Every measured number beside its goal, with what it was measured on. Why something
    was not measured is in `notes`, printed below the table."""
    machine, settings = results["machine"], results["settings"]
    out = Table(
        title=(
            f"humanline bench: {machine['cpu']}, {machine['cores']} cores, "
            f"Python {machine['python']}, {settings['processes']} client processes"
        ),
        caption="goals: ratios to the ceilings measured in the same run",
    )
    for header in ("measure", "backend", "measured", "goal", "how"):
        out.add_column(header, justify="right" if header == "measured" else "left")
    sizes = results["message_bytes"] or {}
    calls = settings["processes"] * settings["concurrency_per_process"]
    out.add_row(
        "echo unary calls/s (ceiling)",
        "",
        number(results["echo_unary_rps"], 0),
        "",
        f"{calls} in flight; {sizes.get('request', '?')} B in, {sizes.get('response', '?')} B out"
        if results["echo_unary_rps"] is not None
        else "not measured (below)",
    )
    out.add_row(
        "lifecycles/s, bare RPCs (ceiling)",
        "",
        number(results["bare_lifecycles_per_s"]),
        "",
        "humanline's RPCs with no store, no logs behind them; the same clients"
        if results["bare_lifecycles_per_s"] is not None
        else "not measured (below)",
    )
    bare_offer = results.get("bare_time_to_offer_ms")
    if bare_offer is not None:
        drain_ms = settings["drain_s"] * 1000
        measured, _, how = _quantile(bare_offer, "p99", drain_ms, None)
        out.add_row(
            "time to offer p99 ms, bare RPCs (ceiling)",
            "",
            measured,
            "",
            f"at {bare_offer['rate']:g}/s, idle agents, nothing behind the RPCs; {how}",
        )
    for backend in results["lifecycles_per_s"]:
        if backend in results["notes"]:
            out.add_row("everything", backend, "-", "", "not measured (below)")
            continue
        _backend_rows(out, results, backend)
    drain_ms = settings["drain_s"] * 1000
    fewest = _fewest_p99(results["streams"])
    for count, streams in results["streams"].items():
        _streams_rows(out, results["goals"], drain_ms, int(count), streams, fewest)
    return out


def _fewest_p99(runs: dict[str, Any]) -> tuple[int, float] | None:
    """The agent count with the fewest agents measured and its time to offer p99, which the
    others' p99 are held against."""
    measured = [(int(n), r["time_to_offer_p99_ms"]) for n, r in runs.items() if r is not None]
    if not measured:
        return None
    count, p99 = min(measured)
    return None if p99 is None else (count, p99)


def _backend_rows(out: Table, results: dict[str, Any], backend: str) -> None:
    goals = results["goals"]
    rate = results["lifecycles_per_s"][backend]
    run = results["runs"].get(f"lifecycles {backend}")
    out.add_row(
        "lifecycles/s",
        backend,
        number(rate),
        "",
        f"{run['bots']} bots, {run['agents']} agents; {run['counted']:,} in {run['window_s']:g} s"
        if run
        else "failed (below)",
    )
    ratio = results["lifecycle_ratio"][backend]
    out.add_row(
        "lifecycle ratio",
        backend,
        number(ratio, 3),
        "",
        f"lifecycles/s x {results['rpc_equivalents_per_lifecycle']} RPCs / echo calls/s",
    )
    share = results["bare_ratio"][backend]
    share_goal = goals.get(f"bare_ratio_min_{backend}")
    out.add_row(
        "share of the bare ceiling",
        backend,
        number(share, 3),
        "" if share_goal is None else _goal(share, share_goal, True, 2),
        "lifecycles/s / bare lifecycles/s",
    )
    trips = results.get("round_trips_per_lifecycle", {}).get(backend)
    trips_goal = goals.get(f"round_trips_per_lifecycle_max_{backend}")
    out.add_row(
        "round trips to the store per lifecycle",
        backend,
        number(trips),
        "" if trips_goal is None else _goal(trips, trips_goal, False),
        "the server's count over the run (its background work included) / lifecycles",
    )
    offer = results["time_to_offer_ms"].get(backend)
    if offer is None:
        out.add_row("time to offer", backend, "-", "", "failed (below)")
        return
    drain_ms = results["settings"]["drain_s"] * 1000
    measured, _, _ = _quantile(offer, "p50", drain_ms, None)
    how = f"at {offer['rate']:g}/s (achieved {offer['achieved_rate']:g}/s), idle agents"
    out.add_row("time to offer p50 ms", backend, measured, "", how)
    bare = results.get("bare_time_to_offer_ms")
    times = goals["time_to_offer_p99_bare_ratio_max"]
    bound = None if bare is None or bare["p99"] is None else bare["p99"] * times
    measured, goal, how = _quantile(offer, "p99", drain_ms, bound)
    if bound is not None:
        how += f"; goal {times:g} x the bare RPCs' p99"
    out.add_row("time to offer p99 ms", backend, measured, goal, how)


def _streams_rows(
    out: Table,
    goals: dict[str, float],
    drain_ms: float,
    count: int,
    streams: dict[str, Any] | None,
    fewest: tuple[int, float] | None,
) -> None:
    label = f"{count:,} idle agents"
    if streams is None:
        out.add_row(label, "sqlite", "-", "", "failed (below)")
        return
    out.add_row(
        f"{label}: RSS MiB",
        "sqlite",
        number(streams["rss_mib"], 0),
        _goal(streams["rss_mib"], goals["streams_rss_mib_max"], False),
        f"peak {number(streams['peak_rss_mib'], 0)}, empty {number(streams['base_rss_mib'], 0)};"
        f" created in {streams['create_s']:g} s, connected in {streams['connect_s']:g} s",
    )
    p99 = {**streams, "p99": streams["time_to_offer_p99_ms"]}
    growth = goals["streams_time_to_offer_p99_growth_max"]
    bound = None if fewest is None or fewest[0] == count else fewest[1] * growth
    measured, goal, how = _quantile(p99, "p99", drain_ms, bound)
    if bound is not None and fewest is not None:
        how += f"; goal {growth:g} x the p99 with {fewest[0]:,}"
    out.add_row(
        f"{label}: offer p99 ms", "sqlite", measured, goal, f"at {streams['rate']:g}/s; {how}"
    )
    bare = streams.get("bare")
    if bare is not None:
        measured, _, how = _quantile(
            {**bare, "p99": bare["time_to_offer_p99_ms"]}, "p99", drain_ms, None
        )
        out.add_row(
            f"{label}: bare RPCs, offer p99 ms",
            "",
            measured,
            "",
            f"the ceiling: RSS {number(bare['rss_mib'], 0)} MiB; {how}",
        )


def _quantile(
    offers: dict[str, Any], key: str, drain_ms: float, bound: float | None
) -> tuple[str, str, str]:
    """Measured, goal (if `bound`) and how for a time to offer quantile (`key` in `offers`,
    with its `offered` and `sent`). When it falls among the handoffs never offered by the
    end, it is unknown, but at least the drain time they waited after the last arrival."""
    value, offered, sent = offers[key], offers["offered"], offers["sent"]
    text = f"{offered:,} of {sent:,} offered"
    if value is not None or offered == sent:
        return number(value), "" if bound is None else _goal(value, bound, False, 1), text
    return (
        f">= {drain_ms:,.0f}",
        "" if bound is None else _goal(drain_ms, bound, False, 1),
        f"{text}; the others waited longer than the drain time",
    )


def count_mismatches(results: dict[str, Any]) -> list[str]:
    """Where the clients' counts and the server's log disagree (they should not)."""
    found = []
    for name, run in results["runs"].items():
        server = run.get("server")
        if not server:
            continue
        pairs = [("queued", "handoff_queued"), ("completed", "interaction_completed")]
        for mine, theirs in pairs:
            if mine in run and theirs in server and run[mine] != server[theirs]:
                found.append(f"{name}: {mine} {run[mine]}, the server logged {server[theirs]}")
    return found


SOAK_COLUMNS = (
    ("minute", "minute"),
    ("handoffs", "handoffs"),
    ("CPU ms/handoff", "cpu_ms_per_handoff"),
    ("offer p50 ms", "time_to_offer_p50_ms"),
    ("offer p99 ms", "time_to_offer_p99_ms"),
    ("RSS MiB", "rss_mib"),
    ("report 1d ms", "1d"),
    ("report 30d ms", "30d"),
    ("check ms", "check_ms"),
)


def soak_tables(results: dict[str, Any]) -> list[Table]:
    """The soak's minutes, a table per store and run, and its goals beside what was
    measured."""
    machine, settings = results["machine"], results["settings"]
    tables = []
    for backend, runs in results["runs"].items():
        for name, run in runs.items():
            preload = run.get("preload")
            title = f"soak {backend}, {name} store"
            if preload:
                title += (
                    f" ({preload['rows'].get('handoffs', 0):,} finished handoffs preloaded"
                    f" in {preload['seconds']:,.0f} s)"
                )
            out = Table(
                title=title,
                caption=(
                    f"{settings['rate']:g} handoffs/s, {settings['processes']} x "
                    f"{settings['agents']} agents working {settings['work']:g} s on average;"
                    f" {machine['cpu']}, {machine['cores']} cores"
                ),
            )
            for header, _ in SOAK_COLUMNS:
                out.add_column(header, justify="right")
            for minute in run["minutes"]:
                values = {**minute, **minute.get("report_ms", {})}
                out.add_row(
                    *(
                        str(values[key])
                        if key in ("minute", "handoffs")
                        else number(values.get(key), 2)
                        for _, key in SOAK_COLUMNS
                    )
                )
            tables.append(out)
    goals = Table(title="soak goals")
    for header in ("goal", "backend", "measured", "bound", "met"):
        goals.add_column(header, justify="right" if header == "measured" else "left")
    for backend, verdicts in results["verdicts"].items():
        for name, verdict in verdicts.items():
            met = verdict["met"]
            goals.add_row(
                name,
                backend,
                number(verdict["measured"], 3),
                f"{verdict['goal']:g}",
                "-" if met is None else "[green]met[/]" if met else "[red]not met[/]",
            )
    tables.append(goals)
    return tables
