"""The simulator's random streams: each part of a run draws from its own, so that two runs of
a scenario meet the same customers and agents' comings and goings (common random numbers)."""

from __future__ import annotations

from humanline.sim.players import streams


def test_a_stream_draws_the_same_whatever_the_others_draw() -> None:
    fraud = streams(1, "arrivals", "fraud")
    expected = [fraud.random() for _ in range(5)]
    lookups = streams(1, "arrivals", "order_lookup")
    again = streams(1, "arrivals", "fraud")
    drawn = []
    for _ in range(5):
        lookups.random()  # another type's arrivals, interleaved
        drawn.append(again.random())
    assert drawn == expected


def test_streams_differ_by_part_and_seed() -> None:
    first = streams(1, "arrivals", "fraud").random()
    assert streams(1, "arrivals", "billing_dispute").random() != first
    assert streams(2, "arrivals", "fraud").random() != first
    assert streams(1, "presence", "fraud").random() != first
