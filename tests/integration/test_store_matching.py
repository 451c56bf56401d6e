"""The store's matching SQL against the domain's specification, on random pools and queues.

`SqlAgentRepository.candidates_for` and `SqlHandoffRepository.queued_for_agent` narrow the
candidates in SQL for speed; `humanline.domain.matching` says what is right. Hypothesis
generates agents (skills, languages, capacity, load, status, connection, last assignment),
handoffs (skills, language, state, deadlines) and declines/misses, and every query must
return exactly what the pure functions compute. The derived agent state is checked the same
way (ListAgents' filter and GetPoolStatus count in SQL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from humanline.domain.clock import FakeClock
from humanline.domain.matching import Candidate, agent_rank_key, is_eligible, queue_key, rank
from humanline.domain.model import (
    Agent,
    AgentOrder,
    AgentProfile,
    AgentState,
    AgentStatus,
    Handoff,
    HandoffReason,
    HandoffRequest,
    HandoffState,
    SkillRequirement,
    Urgency,
    WaitPlan,
)
from humanline.domain.quality import Standing, Track
from humanline.store.sql import tables
from humanline.store.sql.store import SqlStore
from tests.conftest import empty_postgres
from tests.unit import builders

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SKILLS = ["billing", "fraud", "orders"]
TYPES = ["t", "u"]
LANGUAGES = ["en", "de"]

agent_ids = iter(f"agent-{i:05d}" for i in range(10**6))


@st.composite
def agents(draw: st.DrawFn) -> Agent:
    capacity = draw(st.integers(1, 3))
    skills = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3))
    status = draw(st.sampled_from(list(AgentStatus)))
    return Agent(
        id=next(agent_ids),
        profile=AgentProfile(
            display_name="x",
            skills=skills,
            languages=frozenset(draw(st.sets(st.sampled_from(LANGUAGES), max_size=2))),
            capacity=capacity,
        ),
        status=status,
        connected=status is not AgentStatus.OFFLINE and draw(st.booleans()),
        load=draw(st.integers(0, capacity)),
        consecutive_misses=0,
        last_assigned_at=draw(
            st.none() | st.integers(0, 5).map(lambda m: T0 + timedelta(minutes=m))
        ),
        created_at=T0,
        updated_at=T0,
    )


@st.composite
def handoffs(draw: st.DrawFn) -> Handoff:
    created = T0 + timedelta(seconds=draw(st.integers(0, 30)))
    requirements = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=2))
    request = HandoffRequest(
        request_id=str(uuid.uuid4()),
        conversation_id="c",
        customer_id="u",
        interaction_type=draw(st.sampled_from(TYPES)),
        required_skills=tuple(SkillRequirement(s, m) for s, m in requirements.items()),
        language=draw(st.none() | st.sampled_from(LANGUAGES)),
        urgency=Urgency.NORMAL,
        summary="",
        reason=HandoffReason.UNSPECIFIED,
    )
    return Handoff(
        id=str(uuid.uuid4()),
        request=request,
        fingerprint=request.fingerprint(),
        state=draw(st.sampled_from([HandoffState.QUEUED] * 3 + [HandoffState.ASSIGNED])),
        created_at=created,
        deadline=created + timedelta(seconds=draw(st.sampled_from([30, 60, 120]))),
        requeue_count=0,
        agent_id=None,
        offer_id=None,
        assigned_at=None,
        ended_at=None,
        completion=None,
        agent_order=draw(st.sampled_from(list(AgentOrder))),
        quality_ranked=draw(st.booleans()),
    )


@st.composite
def tracks(draw: st.DrawFn) -> Track:
    """A quality track with whole counts, so that agents fall in different bands."""
    completed = draw(st.integers(0, 30))
    rated = draw(st.integers(0, 10))
    return Track(
        float(completed),
        float(draw(st.integers(0, completed))),
        float(rated),
        float(draw(st.integers(0, rated))),
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def runner(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[asyncio.Runner, SqlStore]]:
    """A store on each backend, with its own event loop for Hypothesis' synchronous runs."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("matching") / "m.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database")
        empty_postgres(url)
    store = SqlStore(url, FakeClock(T0))
    with asyncio.Runner() as loop:
        loop.run(store.open())
        yield loop, store
        loop.run(store.close())


Hold = tuple[int, int, bool, int | None]


def with_holds(
    pool: list[Agent], queue: list[Handoff], holds: list[Hold], now: datetime
) -> list[Handoff]:
    """The queue with some handoffs held for a known agent: (handoff, agent, whether the
    hold is still on at `now`, the store's time: PostgreSQL's is its own clock's; the level
    of experts it keeps back meanwhile, if any)."""
    queue = list(queue)
    for h, a, on, level in holds:
        if not pool or not queue:
            break
        i = h % len(queue)
        until = now + timedelta(seconds=60 if on else -1)
        plan = WaitPlan(
            preferred_agent_id=pool[a % len(pool)].id,
            preferred_until=until,
            expert_level=level,
            experts_from=None if level is None else now + timedelta(seconds=60),
        )
        request = replace(queue[i].request, preferred_agent_id=plan.preferred_agent_id)
        queue[i] = replace(queue[i], request=request, plan=plan)
    return queue


def with_reserves(
    queue: list[Handoff], reserves: list[tuple[int, int, bool]], now: datetime
) -> list[Handoff]:
    """The queue with some handoffs kept from experts: (handoff, expert level, whether the
    reserve is still on at `now`)."""
    queue = list(queue)
    for h, level, on in reserves:
        if not queue:
            break
        i = h % len(queue)
        until = now + timedelta(seconds=60 if on else -1)
        queue[i] = replace(
            queue[i], plan=replace(queue[i].plan, expert_level=level, experts_from=until)
        )
    return queue


Quality = tuple[dict[tuple[int, str], Track], dict[str, Track]]


async def load(
    store: SqlStore,
    pool: list[Agent],
    queue: list[Handoff],
    declines: list[tuple[int, int]],
    quality: Quality = ({}, {}),
) -> set[tuple[str, str]]:
    """Replaces the store's content, with the agents' (by index) and the pool's quality
    tracks; returns the (handoff, agent) pairs declined or missed."""
    excluded: set[tuple[str, str]] = set()
    async with store.write() as uow:
        conn = uow.agents._conn  # type: ignore[attr-defined]
        for table in (
            "agent_quality",
            "quality_pool",
            "offers",
            "handoff_skills",
            "handoffs",
            "agent_skills",
            "agent_languages",
            "agents",
        ):
            await conn.execute(sa.text(f"DELETE FROM {table}"))
        for agent in pool:
            await uow.agents.insert(agent.id, agent.profile, T0)
            await conn.execute(
                sa.update(tables.agents)
                .where(tables.agents.c.id == agent.id)
                .values(
                    status=agent.status.value,
                    connected=agent.connected,
                    load=agent.load,
                    last_assigned_at=agent.last_assigned_at,
                )
            )
        own, pool_tracks = quality
        for (i, kind), track in own.items():
            if i < len(pool):
                values = dataclasses.asdict(track) | {"updated_at": T0}
                await conn.execute(
                    sa.insert(tables.agent_quality).values(
                        agent_id=pool[i].id, interaction_type=kind, **values
                    )
                )
        for kind, track in pool_tracks.items():
            values = dataclasses.asdict(track) | {"updated_at": T0}
            await conn.execute(
                sa.insert(tables.quality_pool).values(interaction_type=kind, **values)
            )
        for handoff in queue:
            await uow.handoffs.insert(handoff)
            await conn.execute(
                sa.update(tables.handoffs)
                .where(tables.handoffs.c.id == handoff.id)
                .values(state=handoff.state.value)
            )
        for h, a in declines:
            if not pool or not queue:
                break
            handoff, agent = queue[h % len(queue)], pool[a % len(pool)]
            excluded.add((handoff.id, agent.id))
            await conn.execute(
                sa.insert(tables.offers).values(
                    id=str(uuid.uuid4()),
                    handoff_id=handoff.id,
                    agent_id=agent.id,
                    state="DECLINED" if (h + a) % 2 else "EXPIRED",
                    created_at=T0,
                    expires_at=T0,
                )
            )
    return excluded


SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(SETTINGS, max_examples=200)
@given(
    pool=st.lists(agents(), max_size=8),
    queue=st.lists(handoffs(), max_size=8),
    declines=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=6),
    holds=st.lists(
        st.tuples(
            st.integers(0, 7), st.integers(0, 7), st.booleans(), st.none() | st.integers(1, 5)
        ),
        max_size=3,
    ),
    reserves=st.lists(st.tuples(st.integers(0, 7), st.integers(1, 5), st.booleans()), max_size=3),
    own=st.dictionaries(st.tuples(st.integers(0, 7), st.sampled_from(TYPES)), tracks()),
    pool_tracks=st.dictionaries(st.sampled_from(TYPES), tracks()),
)
def test_matching_sql_equals_the_domain_rules(
    runner: tuple[asyncio.Runner, SqlStore],
    pool: list[Agent],
    queue: list[Handoff],
    declines: list[tuple[int, int]],
    holds: list[Hold],
    reserves: list[tuple[int, int, bool]],
    own: dict[tuple[int, str], Track],
    pool_tracks: dict[str, Track],
) -> None:
    loop, store = runner

    def standing(agent: Agent, handoff: Handoff) -> Standing:
        kind = handoff.request.interaction_type
        index = next(i for i, a in enumerate(pool) if a.id == agent.id)
        return Standing(own.get((index, kind), Track()), pool_tracks.get(kind, Track()))

    def band(agent: Agent, handoff: Handoff) -> int:
        return standing(agent, handoff).band if handoff.quality_ranked else 0

    async def check() -> None:
        async with store.read() as uow:
            now = uow.now
        held = with_reserves(with_holds(pool, queue, holds, now), reserves, now)
        excluded = await load(store, pool, held, declines, (own, pool_tracks))
        async with store.read() as uow:
            for handoff in held:
                if handoff.state is not HandoffState.QUEUED:
                    continue
                out = {a for h, a in excluded if h == handoff.id}
                # Candidates leave the hold for a known agent to their caller, not the
                # experts' reserve.
                expected = sorted(
                    (
                        a
                        for a in pool
                        if is_eligible(a, handoff, out) and not handoff.closed_to(a.expertise, now)
                    ),
                    key=lambda a: agent_rank_key(a, handoff, band(a, handoff)),
                )
                got = await uow.agents.candidates_for(handoff, limit=100)
                assert [c.agent.id for c in got] == [a.id for a in expected]
                for c in got:  # each with the standing ranking used, where it ranks
                    want = standing(c.agent, handoff) if handoff.quality_ranked else None
                    assert c.standing == want
                for limit in (1, 2):  # the LIMIT keeps the best ones
                    top = await uow.agents.candidates_for(handoff, limit=limit)
                    assert [c.agent.id for c in top] == [a.id for a in expected[:limit]]
            for agent in pool:
                mine = {h for h, a in excluded if a == agent.id}
                expected_h = sorted(
                    (
                        h
                        for h in held
                        if h.state is HandoffState.QUEUED
                        and h.id not in mine
                        and is_eligible(_ready(agent), h, now=now)
                    ),
                    key=queue_key,
                )
                got_h = await uow.handoffs.queued_for_agent(agent, limit=100)
                assert [h.id for h in got_h] == [h.id for h in expected_h]

    loop.run(check())


@st.composite
def fractional_tracks(draw: st.DrawFn) -> Track:
    """Tracks as outcomes leave them: weighted, so fractional."""
    completed = draw(st.floats(0, 100))
    rated = draw(st.floats(0, 100))
    return Track(
        completed,
        draw(st.floats(0, 1)) * completed,
        rated,
        draw(st.floats(0, 1)) * rated,
    )


@settings(SETTINGS, max_examples=100)
@given(
    window=st.integers(1, 8),
    levels=st.lists(st.integers(3, 4), min_size=2, max_size=8),
    own=st.lists(st.none() | tracks() | fractional_tracks(), min_size=8, max_size=8),
    pool_track=st.none() | tracks() | fractional_tracks(),
    two_skills=st.booleans(),
    least=st.booleans(),
)
def test_quality_ranking_sql_equals_the_domain(
    runner: tuple[asyncio.Runner, SqlStore],
    window: int,
    levels: list[int],
    own: list[Track | None],
    pool_track: Track | None,
    two_skills: bool,
    least: bool,
) -> None:
    """Ready agents of few proficiency levels, so that the quality bands decide often: the
    store's order, band by band, is the domain's (`rank`), with whole and fractional tracks
    (the band is computed in floating point on both sides, in the same order of
    operations), and windows narrower than the pool."""
    loop, store = runner
    pool = [
        builders.agent(
            next(agent_ids),
            skills={"billing": level, "fraud": 3},
            last_assigned_at=T0 + timedelta(minutes=i % 3),
            created_at=T0,
        )
        for i, level in enumerate(levels)
    ]
    skills = {"billing": 3, "fraud": 1} if two_skills else {"billing": 3}
    handoff = replace(
        builders.handoff(
            str(uuid.uuid4()),
            request_id=str(uuid.uuid4()),
            interaction_type="t",
            skills=skills,
            created_at=T0,
            deadline=T0 + timedelta(seconds=60),
        ),
        agent_order=AgentOrder.LEAST_EXPERT if least else AgentOrder.MOST_PROFICIENT,
        quality_ranked=True,
    )
    tracked = {(i, "t"): t for i, t in enumerate(own) if t is not None}
    prior = {} if pool_track is None else {"t": pool_track}
    standings = {
        a.id: Standing(tracked.get((i, "t"), Track()), pool_track or Track())
        for i, a in enumerate(pool)
    }
    expected = rank(handoff, [Candidate(a, standings[a.id]) for a in pool], window)

    async def check() -> None:
        await load(store, pool, [handoff], [], (tracked, prior))
        async with store.read() as uow:
            got = await uow.agents.candidates_for(handoff, limit=100, window=window)
            assert got == expected
            top = await uow.agents.candidates_for(handoff, limit=1, window=window)
            assert top == expected[:1]

    loop.run(check())


def _ready(agent: Agent) -> Agent:
    """The agent as if it were free now: queued_for_agent asks what it *could* take."""
    return Agent(
        id=agent.id,
        profile=agent.profile,
        status=AgentStatus.AVAILABLE,
        connected=True,
        load=0,
        consecutive_misses=0,
        last_assigned_at=agent.last_assigned_at,
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


@settings(SETTINGS, max_examples=150)
@given(pool=st.lists(agents(), max_size=10))
def test_state_filter_and_counts_equal_the_derived_state(
    runner: tuple[asyncio.Runner, SqlStore], pool: list[Agent]
) -> None:
    loop, store = runner

    async def check() -> None:
        await load(store, pool, [], [])
        async with store.read() as uow:
            snapshot = await uow.pool.snapshot()
            for state in AgentState:
                listed = await uow.agents.page(limit=100, after_id=None, state=state, skill=None)
                expected = sorted(a.id for a in pool if a.state is state)
                assert [a.id for a in listed] == expected
                assert snapshot.agents_by_state[state] == len(expected)
            for capacity in snapshot.skills:
                holders = [
                    a
                    for a in pool
                    if capacity.key in a.profile.skills
                    and a.status is AgentStatus.AVAILABLE
                    and a.connected
                ]
                assert capacity.available_agents == sum(a.free_capacity > 0 for a in holders)
                assert capacity.free_capacity == sum(a.free_capacity for a in holders)

    loop.run(check())
