"""Ops use cases: manage agents, look at the pool, read quality reports."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from humanline.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from humanline.domain.model import Agent, AgentProfile, AgentState, Handoff, ProfileUpdate
from humanline.domain.quality import Alert, Dimension, GroupQuality, OutcomeQuery, alerts
from humanline.service.dispatcher import Dispatcher
from humanline.service.quality import rolled_up
from humanline.service.retention import RetentionPolicy
from humanline.service.transitions import retry_conflicts
from humanline.store.port import AtRisk, DuplicateKey, PoolSnapshot, Store, UnitOfWork

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
EXPORT_PAGE = 200  # handoffs read per transaction while exporting
DEFAULT_QUALITY_WINDOW = timedelta(days=1)
MAX_QUALITY_WINDOW = timedelta(days=366)
DEFAULT_AT_RISK_HORIZON = timedelta(seconds=15)
MAX_AT_RISK_HORIZON = timedelta(hours=1)
KEPT_SLACK = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class AgentPage:
    """One page of ListAgents."""

    agents: list[Agent]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """GetPoolStatus: the snapshot, when it was taken, and the handoffs at risk of missing
    their target within `horizon` of then."""

    snapshot: PoolSnapshot
    taken_at: datetime
    horizon: timedelta = DEFAULT_AT_RISK_HORIZON
    at_risk: tuple[AtRisk, ...] = ()

    @property
    def oldest_wait(self) -> timedelta:
        """How long the longest-waiting handoff has waited; zero if none waits."""
        oldest = self.snapshot.oldest_created_at
        return timedelta(0) if oldest is None else max(timedelta(0), self.taken_at - oldest)

    def differs(self, other: PoolStatus) -> bool:
        """Whether the pool or the queue differ from `other`'s: any count, the handoffs at
        risk, or which handoff waits longest. Not the time alone: the oldest wait growing
        while the same handoff waits, or a later snapshot time."""
        return (self.snapshot, self.horizon, self.at_risk) != (
            other.snapshot,
            other.horizon,
            other.at_risk,
        )


async def read_status(
    uow: UnitOfWork, horizons: Collection[timedelta]
) -> tuple[PoolSnapshot, dict[timedelta, tuple[AtRisk, ...]]]:
    """The pool's snapshot and, for each horizon, the handoffs at risk, in one transaction."""
    snapshot = await uow.pool.snapshot()
    return snapshot, {h: tuple(await uow.pool.at_risk(h)) for h in sorted(set(horizons))}


@dataclass(frozen=True, slots=True)
class QualityReport:
    """GetQualityReport: the window, its groups and the whole window."""

    since: datetime
    until: datetime
    groups: list[GroupQuality]
    overall: GroupQuality
    alerts: list[Alert]


def _window(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """A report's or export's window: until now and a day long unless told; refused when it
    ends before it starts."""
    until = until or now
    since = since or until - DEFAULT_QUALITY_WINDOW
    if since >= until:
        raise InvalidArgument([FieldViolation("end_time", "must be after start_time")])
    return since, until


def _encode_token(after_id: str, state: AgentState | None, skill: str | None) -> str:
    raw = json.dumps({"after": after_id, "state": state and state.value, "skill": skill})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _bad_token(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("page_token", description)])


MAX_PAGE_TOKEN = 512  # ours are under 200 characters


def _decode_token(token: str, state: AgentState | None, skill: str | None) -> str:
    if len(token) > MAX_PAGE_TOKEN:
        raise _bad_token("is not a token returned by ListAgents")
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        after, token_state, token_skill = data["after"], data["state"], data["skill"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise _bad_token("is not a token returned by ListAgents") from None
    if not isinstance(after, str):
        raise _bad_token("is not a token returned by ListAgents")
    if token_state != (state and state.value) or token_skill != skill:
        raise _bad_token("was issued for a different filter")
    return after


class Pool:
    """The agent pool as ops manage it."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, retention: RetentionPolicy | None = None
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._retention = retention or RetentionPolicy()

    @retry_conflicts
    async def create_agent(self, agent_id: str | None, profile: AgentProfile) -> Agent:
        """Creates an offline agent; the id is generated when not given."""
        agent_id = agent_id or str(uuid.uuid4())
        profile = profile if profile.display_name else _named(profile, agent_id)
        async with self._dispatcher.transaction() as (uow, fx):
            try:
                agent = await uow.agents.insert(agent_id, profile, uow.now)
            except DuplicateKey as exc:
                raise AlreadyExists(
                    "an agent with this id exists or existed",
                    reason="AGENT_EXISTS",
                    metadata={"agent_id": agent_id},
                ) from exc
            fx.log(
                "agent_created",
                agent_id=agent_id,
                capacity=profile.capacity,
                skills=sorted(profile.skills),
            )
        return agent

    @retry_conflicts
    async def update_agent(self, agent_id: str, update: ProfileUpdate) -> Agent:
        """Changes an agent's profile; new skills or capacity may make it eligible for work."""
        async with self._dispatcher.transaction() as (uow, fx):
            current = await uow.agents.get(agent_id)
            if current is None:
                raise NotFound.of("agent", agent_id)
            profile = update.apply(current.profile)
            if not profile.display_name:
                profile = _named(profile, agent_id)
            agent = await uow.agents.update_profile(agent_id, profile, uow.now)
            if agent is None:
                raise FailedPrecondition(
                    f"the agent holds {current.load} interactions and offers; capacity cannot "
                    "go below that",
                    reason="CAPACITY_BELOW_LOAD",
                    metadata={"agent_id": agent_id, "load": str(current.load)},
                )
            fx.match_agent(agent_id)
            fx.log(
                "agent_updated",
                agent_id=agent_id,
                capacity=profile.capacity,
                skills=sorted(profile.skills),
            )
        return agent

    async def get_agent(self, agent_id: str) -> Agent:
        """The agent, or NotFound."""
        async with self._store.read() as uow:
            agent = await uow.agents.get(agent_id)
        if agent is None:
            raise NotFound.of("agent", agent_id)
        return agent

    async def list_agents(
        self, *, page_size: int, page_token: str, state: AgentState | None, skill: str | None
    ) -> AgentPage:
        """A page of agents ordered by id; `page_size` 0 means the default."""
        after = _decode_token(page_token, state, skill) if page_token else None
        limit = page_size or DEFAULT_PAGE_SIZE
        async with self._store.read() as uow:
            agents = await uow.agents.page(
                limit=limit + 1, after_id=after, state=state, skill=skill
            )
        more = len(agents) > limit
        agents = agents[:limit]
        token = _encode_token(agents[-1].id, state, skill) if more else ""
        return AgentPage(agents, token)

    @retry_conflicts
    async def delete_agent(self, agent_id: str) -> None:
        """Deletes an offline agent holding no work."""
        async with self._dispatcher.transaction() as (uow, fx):
            agent = await uow.agents.get(agent_id)
            if agent is None:
                raise NotFound.of("agent", agent_id)
            if not await uow.agents.mark_deleted(agent_id, uow.now):
                raise FailedPrecondition(
                    f"the agent is {agent.state.value.lower()} or holds work; it must be "
                    "offline and idle to be deleted",
                    reason="AGENT_IN_USE",
                    metadata={"agent_id": agent_id, "state": agent.state.value},
                )
            fx.log("agent_deleted", agent_id=agent_id)

    async def status(self, horizon: timedelta = DEFAULT_AT_RISK_HORIZON) -> PoolStatus:
        """Agents by state (in all and per skill), capacity per skill and language, the
        queue, and the handoffs at risk of missing their target within `horizon`."""
        async with self._store.read(snapshot=True) as uow:
            snapshot, at_risk = await read_status(uow, (horizon,))
            return PoolStatus(snapshot, uow.now, horizon, at_risk[horizon])

    async def export(
        self, query: OutcomeQuery, since: datetime | None, until: datetime | None
    ) -> AsyncIterator[Handoff]:
        """The completed handoffs `query` selects, by completion time, in [since, until)
        (by default the last day), read a page per transaction."""
        async with self._store.read() as uow:
            since, until = _window(since, until, uow.now)
            _kept(since, self._retention.history_from(uow.now), "HUMANLINE_RETENTION_DAYS")
        query = replace(query, since=since, until=until)
        after: tuple[datetime, str] | None = None
        while True:
            async with self._store.read() as uow:
                page = await uow.handoffs.completed_page(query, after, EXPORT_PAGE)
            for handoff in page:
                yield handoff
            if len(page) < EXPORT_PAGE:
                return
            last = page[-1]
            assert last.ended_at is not None
            after = (last.ended_at, last.id)

    async def quality(
        self,
        by: Dimension,
        since: datetime | None,
        until: datetime | None,
        interaction_type: str | None,
    ) -> QualityReport:
        """Quality over the handoffs requested in [since, until) (by default the last day),
        grouped `by`, with the whole window's, and the groups flagged against the rest of
        the pool or against the window just before. The store keeps the numbers per bucket
        of time (a minute, recently; an hour or a day, further back), so each end of the
        window moves up to its next bucket boundary; the report says which window it is."""
        async with self._store.read(snapshot=True) as uow:
            since, until = _window(since, until, uow.now)
            if until - since > MAX_QUALITY_WINDOW:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "start_time", f"the window spans at most {MAX_QUALITY_WINDOW.days} days"
                        )
                    ]
                )
            # (Its baseline, the window before, counts what is kept of it.)
            kept_from = self._retention.rollups_from(uow.now)
            _kept(since, kept_from, "HUMANLINE_ROLLUP_RETENTION_DAYS")
            window = rolled_up(uow, since, until, by)
            since, until = window.start, window.end
            baseline = rolled_up(uow, since - (until - since), since, by)
            current, before = await uow.rollups.tallies([window, baseline], by, interaction_type)
        groups, whole = current.report(), current.overall()
        return QualityReport(since, until, groups, whole, alerts(groups, whole, before.report()))


def _kept(since: datetime, kept_from: datetime, setting: str) -> None:
    """Refuses a window reaching back before what is kept: the history there is gone. (By
    a minute's slack: "the last 90 days", reckoned on the caller's clock a moment before,
    is served.)"""
    if since < kept_from - KEPT_SLACK:
        raise FailedPrecondition(
            f"the window reaches back before {kept_from.isoformat()}: older history is not "
            f"kept ({setting})",
            reason="HISTORY_PRUNED",
            metadata={"kept_from": kept_from.isoformat(), "setting": setting},
        )


def _named(profile: AgentProfile, agent_id: str) -> AgentProfile:
    return AgentProfile(agent_id, profile.skills, profile.languages, profile.capacity)
