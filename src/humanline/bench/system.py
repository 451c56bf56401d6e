"""What the bench reads from the machine and the server: a description of the machine, a
process's memory and CPU time, the server's `/metrics`."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from humanline import __version__


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _commit() -> str | None:
    """The checkout's commit, "-dirty" when files differ from it; None outside a checkout."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    return f"{commit}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else commit


def machine() -> dict[str, object]:
    """The machine and the code measured: CPU model and count, memory, Python, date, commit."""
    memory = _first("/proc/meminfo", "MemTotal")  # "24575000 kB"
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or None,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "humanline": __version__,
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def memory_mib(pid: int) -> tuple[float, float] | None:
    """A process's resident memory now and at its peak (VmRSS, VmHWM) in MiB; None where
    /proc does not tell (not Linux, or the process is gone)."""
    rss = _first(f"/proc/{pid}/status", "VmRSS")
    peak = _first(f"/proc/{pid}/status", "VmHWM")
    if rss is None or peak is None:
        return None
    return int(rss.split()[0]) / 1024, int(peak.split()[0]) / 1024


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used so far, user and system (from /proc/<pid>/stat), in
    seconds; None where /proc does not tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command (which is in parentheses and may hold spaces): state is
    # field 3, utime and stime fields 14 and 15.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics(port: int) -> dict[str, float]:
    """The samples a server's `/metrics` on 127.0.0.1:`port` shows now, by name (with the
    labels, where a sample has any, as Prometheus writes them). OSError when it cannot be
    read."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found
