"""Scraping humanline's Prometheus endpoint in tests."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """The exposition text and its samples by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until(port: int, check: Callable[[Samples], bool], timeout: float = 5.0) -> Samples:
    """Scrapes until `check` holds (gauges refresh on their own schedule); fails after
    `timeout` with the last scrape."""
    samples: Samples = {}
    async with asyncio.timeout(timeout):
        while True:
            _, samples = await asyncio.to_thread(scrape, port)
            if check(samples):
                return samples
            await asyncio.sleep(0.05)
