"""`humanline simulate --plot FILE.png`: queue depth, available agents and waits over the run."""

from __future__ import annotations

from pathlib import Path

from humanline.sim.report import Observations


class PlotUnavailable(Exception):
    """matplotlib is not installed (it is an extra: humanline[plot])."""


def check() -> None:
    """Raises PlotUnavailable now if drawing would fail for want of matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'humanline[plot]'") from None


def draw(seen: Observations, path: Path, title: str) -> None:
    """Three panels over the run's seconds: handoffs waiting, agents available, and each
    handoff's time to an agent (at the moment it was requested) with the longest wait."""
    check()
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    samples = sorted(seen.samples, key=lambda s: s.at)
    at = [s.at for s in samples]
    figure, (queue, agents, waits) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    figure.suptitle(title)
    queue.plot(at, [s.queued for s in samples], color="tab:red")
    queue.set_ylabel("handoffs waiting")
    agents.plot(at, [s.available_agents for s in samples], color="tab:green")
    agents.set_ylabel("agents available")
    answered = [h for h in seen.handoffs if h.assigned is not None]
    waits.scatter(
        [h.created - seen.started for h in answered],
        [h.assigned - h.created for h in answered if h.assigned is not None],
        s=6,
        alpha=0.6,
        label="time to agent, by request time",
    )
    waits.plot(at, [s.oldest_wait for s in samples], color="tab:gray", label="longest wait")
    waits.set_ylabel("seconds")
    waits.set_xlabel("seconds since the first arrival")
    waits.legend(loc="upper left")
    for axis in (queue, agents, waits):
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
