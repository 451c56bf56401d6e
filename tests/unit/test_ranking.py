"""Quality-aware ranking (domain.quality.Track and Standing, domain.matching): the decayed
tracks, the shrinkage toward the pool, new agents neutral, and the order among agents of
like proficiency."""

from __future__ import annotations

import dataclasses
import math

import pytest

from humanline.domain.matching import Candidate, agent_rank_key, choose_agent, why_chosen
from humanline.domain.model import AgentOrder
from humanline.domain.quality import (
    FORGET,
    MEMORY,
    NEUTRAL,
    PRIOR_WEIGHT,
    SCORE_BANDS,
    Standing,
    Track,
)
from tests.unit.builders import agent, at, handoff


def _track(resolved: int, unresolved: int, satisfied: int = 0, unsatisfied: int = 0) -> Track:
    track = Track()
    for outcome in [True] * resolved + [False] * unresolved:
        track = track.completion(outcome)
    for csat in [5] * satisfied + [2] * unsatisfied:
        track = track.rating(csat)
    return track


POOL = Track(completed=100, resolved=70, rated=100, satisfied=80)  # the sum of its agents


def test_a_track_counts_recent_outcomes_and_forgets_old_ones() -> None:
    track = _track(3, 1, 1, 1)
    assert track.completed == pytest.approx(1 + FORGET + FORGET**2 + FORGET**3)
    # Resolved first, so each weighs less than the unresolved last one.
    assert track.resolved == pytest.approx(FORGET + FORGET**2 + FORGET**3)
    assert (track.rated, track.satisfied) == (pytest.approx(1 + FORGET), pytest.approx(FORGET))
    # Ratings of 4 and 5 are satisfied, 3 and below not.
    assert Track().rating(4).satisfied == 1
    assert Track().rating(3).satisfied == 0
    # However long the record, it weighs as about MEMORY outcomes: an agent who improves
    # is seen to improve.
    long = Track(completed=0, resolved=0)
    for _ in range(20 * MEMORY):
        long = long.completion(True)
    assert long.completed == pytest.approx(MEMORY, rel=1e-6)
    for _ in range(MEMORY):
        long = long.completion(False)
    assert long.resolution == pytest.approx(FORGET**MEMORY, rel=1e-3)  # about 37% left


def test_no_record_reads_as_neutral() -> None:
    assert (Track().resolution, Track().satisfaction) == (NEUTRAL, NEUTRAL)


def test_a_new_agent_scores_the_pool_exactly() -> None:
    new = Standing(Track(), POOL)
    assert new.resolution == pytest.approx(0.7)
    assert new.satisfaction == pytest.approx(0.8)
    assert new.score == pytest.approx(0.75)
    assert new.band == math.floor(0.75 * SCORE_BANDS)
    assert new.explain() == (
        "quality 0.75: new to the type, so the pool's 70% resolved, 80% satisfied"
    )


def test_scores_shrink_toward_the_pool_by_the_size_of_the_record() -> None:
    """Two handoffs resolved out of two say little; forty out of forty say much. By hand:
    (2 + 10 * 0.7) / (2 + 10) = 0.75, against (40 + 7) / 50 = 0.94."""
    lucky = Standing(_track(2, 0), POOL)
    proven = Standing(_track(40, 0), POOL)
    assert lucky.resolution == pytest.approx((2 * _weight(2) + PRIOR_WEIGHT * 0.7) / 12, rel=1e-2)
    assert lucky.resolution == pytest.approx(0.75, abs=0.002)
    assert proven.resolution == pytest.approx(0.94, abs=0.01)
    assert lucky.satisfaction == pytest.approx(0.8)  # no ratings: the pool's
    # The same share failed, on a small and a large record.
    assert Standing(_track(0, 2), POOL).resolution > Standing(_track(0, 40), POOL).resolution
    # The explanation gives the agent's own numbers and the pool's.
    assert proven.explain().startswith(
        f"quality 0.87: 100% resolved of {40 * _weight(40):.0f} weighted completions, shrunk"
    )
    rated = Standing(_track(9, 1, 3, 1), POOL)
    assert (
        "90% resolved of 10 weighted completions and 75% satisfied of 4 weighted ratings"
        in rated.explain()
    )


def _weight(n: int) -> float:
    """The mean weight of n outcomes in a track (close to 1 for few)."""
    return sum(FORGET**i for i in range(n)) / n


def test_without_a_pool_record_the_prior_is_neutral() -> None:
    standing = Standing(_track(10, 0), Track())
    assert standing.resolution == pytest.approx((10 * _weight(10) + 5) / (10 * _weight(10) + 10))


def test_quality_ranks_after_proficiency_and_before_idle_time() -> None:
    h = dataclasses.replace(handoff(skills={"billing": 3}), quality_ranked=True)
    strong = agent("strong", skills={"billing": 5}, last_assigned_at=at(50))
    good = agent("good", skills={"billing": 4}, last_assigned_at=at(40))
    poor = agent("poor", skills={"billing": 4})  # never assigned: longest idle
    new = agent("new", skills={"billing": 4}, last_assigned_at=at(60))
    candidates = [
        Candidate(strong, Standing(_track(10, 30), POOL)),  # poor quality, most proficient
        Candidate(poor, Standing(_track(10, 30), POOL)),
        Candidate(good, Standing(_track(40, 0, 20, 0), POOL)),
        Candidate(new, Standing(Track(), POOL)),
    ]
    # Proficiency first: quality never overrides the skills.
    assert choose_agent(h, candidates) == strong
    rest = candidates[1:]
    # Among equals in skill, the better quality, though idle for less time.
    assert choose_agent(h, rest) == good
    # A new agent ranks above a proven poor one: neutral, so still offered work.
    assert choose_agent(h, [rest[0], rest[2]]) == new
    keys = sorted(rest, key=lambda c: agent_rank_key(c.agent, h, c.band))
    assert [c.agent.id for c in keys] == ["good", "new", "poor"]


def test_like_quality_takes_turns_by_idle_time() -> None:
    """Scores within one band (0.05) rank as equal: the longest idle goes first, so agents
    of like quality share the work."""
    h = dataclasses.replace(handoff(skills={"billing": 3}), quality_ranked=True)
    a = Candidate(
        agent("a", skills={"billing": 4}, last_assigned_at=at(10)),
        Standing(_track(40, 10), POOL),
    )
    b = Candidate(
        agent("b", skills={"billing": 4}, last_assigned_at=at(20)),
        Standing(_track(41, 9), POOL),
    )
    assert a.band == b.band
    assert a.standing is not None
    assert b.standing is not None
    assert b.standing.score > a.standing.score
    assert choose_agent(h, [b, a]) == a.agent


def test_least_expert_order_ranks_quality_after_the_expertise() -> None:
    routine = dataclasses.replace(
        handoff(skills={"orders": 1}), agent_order=AgentOrder.LEAST_EXPERT, quality_ranked=True
    )
    junior_poor = Candidate(agent("jp", skills={"orders": 2}), Standing(_track(5, 30), POOL))
    junior_good = Candidate(agent("jg", skills={"orders": 2}), Standing(_track(30, 0), POOL))
    expert_good = Candidate(agent("eg", skills={"orders": 5}), Standing(_track(50, 0), POOL))
    assert choose_agent(routine, [expert_good, junior_poor, junior_good]) == junior_good.agent


def test_why_chosen_says_the_skills_and_the_score() -> None:
    ranked = dataclasses.replace(handoff(skills={"billing": 3, "fraud": 2}), quality_ranked=True)
    kim = agent("kim", skills={"billing": 5, "fraud": 3})
    assert why_chosen(Candidate(kim, Standing(Track(), POOL)), ranked) == (
        "most proficient eligible agent (billing 5, fraud 3); "
        "quality 0.75: new to the type, so the pool's 70% resolved, 80% satisfied"
    )
    unranked = handoff(skills={"billing": 3})
    assert why_chosen(Candidate(kim), unranked) == (
        "most proficient eligible agent (billing 5); its policy does not rank by quality"
    )
    routine = dataclasses.replace(unranked, agent_order=AgentOrder.LEAST_EXPERT)
    assert why_chosen(Candidate(kim), routine).startswith(
        "least expert eligible agent (best skill 5, billing 5)"
    )
