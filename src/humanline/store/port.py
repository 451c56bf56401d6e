"""The store port: what the service layer needs from persistence, and nothing about SQL.

A `Store` hands out units of work. `write()` opens a transaction that commits when the block
ends normally and rolls back on any exception; `read()` opens a consistent read-only
snapshot. Every unit of work carries `now`, the one clock for leases and expiries (the
process clock on the embedded store, the database's clock on PostgreSQL).

Conditional writes return whether they applied (`bool`), so the service can tell a lost race
from success and roll back; the database's constraints refuse the impossible besides.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from humanline.domain.matching import QUALITY_WINDOW, Candidate
from humanline.domain.model import (
    Agent,
    AgentProfile,
    AgentState,
    AgentStatus,
    Completion,
    DeclineReason,
    Feedback,
    Handoff,
    Offer,
    OfferState,
    RescindReason,
    Session,
    SessionEndReason,
    SkillRequirement,
    StatusChangeReason,
    Urgency,
    WaitPlan,
)
from humanline.domain.quality import (
    BucketKey,
    Dimension,
    Fact,
    OutcomeQuery,
    Resolution,
    Tallies,
    Tally,
    Window,
)
from humanline.domain.routing import RoutingPolicy
from humanline.store.trips import RoundTrips


class StoreError(Exception):
    """A persistence failure that is not the caller's fault (connection lost, disk full)."""


class DuplicateKey(StoreError):
    """An insert hit a unique constraint."""


class StoreConflict(StoreError):
    """The database aborted the transaction to resolve a conflict with a concurrent one
    (a deadlock or a serialization failure). Nothing was written; running the whole
    operation again is safe."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """Available agents and their free capacity for one skill or language."""

    key: str
    available_agents: int
    free_capacity: int


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Counts behind GetPoolStatus. Nothing in it depends on when it was read but on what
    was stored: two snapshots of an unchanged pool are equal (the oldest wait is its
    handoff's creation time, not a duration)."""

    agents_by_state: dict[AgentState, int]
    skills: list[Capacity]
    languages: list[Capacity]
    queue_by_urgency: dict[Urgency, int]
    queue_by_type: dict[str, int]
    oldest_created_at: datetime | None
    # skill -> agents with it (not deleted) in each state, every state present
    agents_by_skill: dict[str, dict[AgentState, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AtRisk:
    """Waiting handoffs of one interaction type at risk of missing their target: past
    their deadline (`overdue`), or with it ahead but within a horizon (`due_soon`)."""

    interaction_type: str
    overdue: int
    due_soon: int


@dataclass(frozen=True, slots=True)
class EligibleSupply:
    """Agents online and available who could serve a handoff, busy or not: their slots and
    how many they are."""

    capacity: int
    agents: int


class AgentRepository(Protocol):
    """Agents: profiles and their live dispatch state."""

    async def get(self, agent_id: str) -> Agent | None:
        """The agent, or None if unknown or deleted."""
        ...

    async def insert(self, agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
        """Creates an offline agent; raises DuplicateKey if the id was ever used."""
        ...

    async def update_profile(
        self, agent_id: str, profile: AgentProfile, now: datetime
    ) -> Agent | None:
        """Replaces the profile; None if the agent is gone or its load exceeds the capacity."""
        ...

    async def mark_deleted(self, agent_id: str, now: datetime) -> bool:
        """Soft-deletes an offline agent holding no work; False otherwise."""
        ...

    async def page(
        self, *, limit: int, after_id: str | None, state: AgentState | None, skill: str | None
    ) -> list[Agent]:
        """Agents ordered by id, after `after_id`, filtered by derived state and skill."""
        ...

    async def candidates_for(
        self, handoff: Handoff, limit: int, window: int = QUALITY_WINDOW
    ) -> list[Candidate]:
        """Agents eligible for `handoff` (see `domain.matching.is_eligible`), best first
        (`domain.matching.rank`: where the handoff is ranked by quality, the first `window`
        ranked again with each one's quality standing, which comes with it); a hold for a
        known agent is not considered (the caller asks for that agent itself)."""
        ...

    async def online_below(
        self, skills: tuple[SkillRequirement, ...], language: str | None, level: int
    ) -> bool:
        """Whether an agent with these skills and language, whose best skill is below
        `level`, is connected and available (free or busy)."""
        ...

    async def supply_for(
        self, skills: tuple[SkillRequirement, ...], language: str | None
    ) -> EligibleSupply:
        """Capacity of connected, available agents with these skills (each at its minimum
        proficiency or better) and this language (None: any)."""
        ...

    async def set_presence(self, agent_id: str, *, status: AgentStatus, connected: bool) -> Agent:
        """Sets status and connection (a login, a drop, a resume, a log-out)."""
        ...

    async def set_status(
        self, agent_id: str, status: AgentStatus, reason: StatusChangeReason, *, reset_misses: bool
    ) -> Agent | None:
        """Sets AVAILABLE or AWAY (and why) for a connected, online agent; None otherwise."""
        ...

    async def reserve(self, agent_id: str) -> bool:
        """Takes one slot for an offer if the agent is eligible for offers now; else False."""
        ...

    async def release(self, agent_id: str, slots: int = 1) -> Agent | None:
        """Frees slots (an offer declined, expired or rescinded, an interaction ended);
        returns the agent as it is now (None if there is no such agent)."""
        ...

    async def record_assignment(self, agent_id: str, now: datetime) -> None:
        """The agent accepted an offer: resets misses and marks the assignment time."""
        ...

    async def set_misses(self, agent_id: str, misses: int) -> None:
        """Stores the count of consecutive missed offers."""
        ...

    async def changed_since(self, since: datetime) -> list[str]:
        """Ids of agents other replicas wrote in transactions started at or after `since`."""
        ...


class HandoffRepository(Protocol):
    """Handoffs: the queue and everything that happened to each request.

    Transitions are conditional and return the handoff as it is afterwards, or None when the
    handoff was not in the required state (a lost race or a stale request).
    """

    async def get(self, handoff_id: str) -> Handoff | None:
        """The handoff, or None."""
        ...

    async def get_by_request_id(self, request_id: str) -> Handoff | None:
        """The handoff created under an idempotency key, or None."""
        ...

    async def insert(self, handoff: Handoff) -> None:
        """Stores a new handoff; raises DuplicateKey if its request_id is taken."""
        ...

    async def offer(self, handoff_id: str, agent_id: str, offer_id: str) -> Handoff | None:
        """QUEUED -> OFFERED to one agent."""
        ...

    async def return_to_queue(
        self, handoff_id: str, offer_id: str, *, keep_hold: bool = False
    ) -> Handoff | None:
        """OFFERED (by this offer) -> QUEUED, keeping its place (declined, expired, rescinded).
        An offer to the handoff's known agent coming back ends the wait for that agent, unless
        `keep_hold` (the offer never reached the agent)."""
        ...

    async def assign(self, handoff_id: str, offer_id: str, now: datetime) -> Handoff | None:
        """OFFERED (by this offer) -> ASSIGNED to the offer's agent."""
        ...

    async def requeue(
        self, handoff: Handoff, offer_id: str, deadline: datetime, plan: WaitPlan
    ) -> Handoff | None:
        """ASSIGNED (by this offer) -> QUEUED with a new deadline and wait plan, counting the
        re-queue (`handoff`: as read in this transaction)."""
        ...

    async def replan(
        self,
        handoff: Handoff,
        plan: WaitPlan,
        skills: tuple[SkillRequirement, ...] | None,
        routing: str,
    ) -> Handoff | None:
        """A QUEUED handoff, its wait plan still as in `handoff`, gets `plan`, the required
        `skills` (None: unchanged) and the `routing` explanation."""
        ...

    async def expire(self, handoff_id: str, now: datetime, reason: str) -> Handoff | None:
        """QUEUED -> EXPIRED (its maximum wait is over), with why."""
        ...

    async def completed_page(
        self, query: OutcomeQuery, after: tuple[datetime, str] | None, limit: int
    ) -> list[Handoff]:
        """Up to `limit` COMPLETED handoffs that `query` selects, by (end time, id), after
        `after` (None: from the start of the window)."""
        ...

    async def record_feedback(
        self, handoff_id: str, feedback: Feedback, now: datetime
    ) -> Handoff | None:
        """Stores the customer's feedback on a COMPLETED handoff that has none yet; None
        otherwise."""
        ...

    async def due_for_review(self, now: datetime, limit: int) -> list[Handoff]:
        """Queued handoffs whose wait plan has something due at `now` (`Handoff.review_at`),
        the most overdue first."""
        ...

    async def end_holds_for(self, agent_id: str) -> list[Handoff]:
        """Ends the wait of every queued handoff held for known agent `agent_id` (it went
        offline or away); returns those handoffs as they are now."""
        ...

    async def complete(
        self,
        handoff_id: str,
        offer_id: str,
        completion: Completion,
        *,
        now: datetime,
        handle_time: timedelta,
    ) -> Handoff | None:
        """ASSIGNED (by this offer) -> COMPLETED with the completion and its handle time."""
        ...

    async def cancel(self, handoff_id: str, offer_id: str | None, now: datetime) -> Handoff | None:
        """QUEUED (`offer_id` None) or OFFERED by this offer -> CANCELLED; None when the handoff
        is no longer as the caller saw it."""
        ...

    async def completion_fingerprint(self, handoff_id: str) -> str | None:
        """Digest of the completion stored with a completed handoff."""
        ...

    async def queued_for_agent(self, agent: Agent, limit: int) -> list[Handoff]:
        """Queued handoffs `agent` may take (skills, language, not declined or missed by it,
        not held for another agent at the unit of work's time), in queue order."""
        ...

    async def queued_since(self, moment: datetime) -> bool:
        """Whether a handoff created at or before `moment` is still queued."""
        ...

    async def position(self, handoff: Handoff) -> int:
        """1-based place among waiting (queued or offered) handoffs in queue order."""
        ...

    async def competing_ahead(self, handoff: Handoff) -> int:
        """Queued handoffs ahead of `handoff` in queue order that the same agents could take:
        those sharing one of its required skills or requiring none (all ahead, when it
        requires none). Offered ones are not counted: they hold their agent's slot already."""
        ...

    async def mean_handle_time(
        self, since: datetime, limit: int, interaction_type: str | None = None
    ) -> timedelta | None:
        """Mean accept-to-completion time of the latest `limit` handoffs (of one type)
        completed since `since`."""
        ...

    async def changed_since(self, since: datetime) -> list[str]:
        """Ids of handoffs other replicas wrote in transactions started at or after `since`."""
        ...


class OfferRepository(Protocol):
    """Offers: each handoff's offers to agents; accepted offers are interactions.

    Transitions are conditional and return the offer as it is afterwards, or None.
    """

    async def get(self, offer_id: str, *, lock: bool = False) -> Offer | None:
        """The offer, or None. With `lock`, nobody else can change it until this transaction
        ends, so what the caller decides from it stays true."""
        ...

    async def insert(self, offer: Offer) -> None:
        """Stores a new PENDING offer; the database refuses a second live one per handoff
        (DuplicateKey)."""
        ...

    async def accept(self, offer_id: str, agent_id: str, now: datetime) -> Offer | None:
        """PENDING and unexpired -> ACCEPTED, for its own agent only."""
        ...

    async def decline(
        self, offer_id: str, agent_id: str, reason: DeclineReason, now: datetime
    ) -> Offer | None:
        """PENDING -> DECLINED, for its own agent only."""
        ...

    async def expire(self, offer_id: str, now: datetime) -> Offer | None:
        """PENDING and past its expiry -> EXPIRED."""
        ...

    async def rescind(self, offer_id: str, reason: RescindReason, now: datetime) -> Offer | None:
        """PENDING -> RESCINDED."""
        ...

    async def finish(self, offer_id: str, state: OfferState, now: datetime) -> Offer | None:
        """ACCEPTED -> COMPLETED or REVOKED (the interaction ended)."""
        ...

    async def for_handoff(self, handoff_id: str) -> list[Offer]:
        """Every offer of a handoff, oldest first."""
        ...

    async def pending_for_agent(self, agent_id: str) -> list[Offer]:
        """The agent's pending offers."""
        ...

    async def accepted_for_agent(self, agent_id: str) -> list[Offer]:
        """The agent's live interactions (accepted offers)."""
        ...

    async def mean_answer_time(self, since: datetime, limit: int) -> timedelta | None:
        """Mean time from offer to acceptance over the last `limit` offers accepted since
        `since`."""
        ...

    async def due_to_expire(self, now: datetime, limit: int) -> list[Offer]:
        """Pending offers whose expiry has passed, oldest first."""
        ...


class SessionRepository(Protocol):
    """Agent sessions: the presence lease. Transitions return the session afterwards, or None."""

    async def get(self, session_id: str) -> Session | None:
        """The session, or None."""
        ...

    async def get_by_token_hash(self, token_hash: str) -> Session | None:
        """The session a resume token belongs to, or None."""
        ...

    async def live_for_agent(self, agent_id: str) -> Session | None:
        """The agent's session that has not ended, or None."""
        ...

    async def insert(self, session: Session) -> None:
        """Stores a new CONNECTED session; the database refuses a second live one per agent
        (DuplicateKey)."""
        ...

    async def reconnect(
        self, session_id: str, replica_id: str, connection_id: str
    ) -> Session | None:
        """Not ENDED -> CONNECTED, held by a new connection on `replica_id`."""
        ...

    async def disconnect(
        self, session_id: str, connection_id: str, now: datetime, grace_expires_at: datetime
    ) -> Session | None:
        """CONNECTED by this connection -> DISCONNECTED with a grace deadline."""
        ...

    async def end(self, session_id: str, reason: SessionEndReason, now: datetime) -> Session | None:
        """Not ENDED -> ENDED."""
        ...

    async def grace_expired(self, now: datetime, limit: int) -> list[Session]:
        """DISCONNECTED sessions whose grace period is over."""
        ...

    async def connected_on(self, replica_id: str) -> list[Session]:
        """CONNECTED sessions whose stream a replica holds."""
        ...


class ReplicaRepository(Protocol):
    """The replicas serving the database, alive while they heartbeat."""

    async def register(self, replica_id: str, host: str, pid: int) -> None:
        """Records a starting replica."""
        ...

    async def heartbeat(self, replica_id: str) -> bool:
        """Marks the replica alive now; False if others already declared it dead."""
        ...

    async def revive(self, replica_id: str) -> None:
        """A replica declared dead that is still running takes its place again."""
        ...

    async def stop(self, replica_id: str) -> None:
        """Records a replica that stopped gracefully."""
        ...

    async def reap(self, silent_since: datetime, keep: str) -> list[str]:
        """Declares dead every live replica (but `keep`) silent since `silent_since`; returns
        their ids. Each dead replica is returned to exactly one caller."""
        ...

    async def live(self) -> list[str]:
        """Replicas not declared stopped or dead."""
        ...

    async def oldest_transaction_start(self) -> datetime | None:
        """When the oldest transaction of any replica still open began (each stamps what it
        writes with that time, and may commit long after); None when the store cannot say or
        has no other writers."""
        ...


class PolicySource(enum.StrEnum):
    """Who set a stored routing policy last."""

    FILE = "FILE"  # the policy file, at a replica's start
    API = "API"  # ops, over PoolService


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A routing policy in the store, and who set it when."""

    policy: RoutingPolicy
    source: PolicySource
    created_at: datetime
    updated_at: datetime


class RoutingPolicyRepository(Protocol):
    """The routing policies set for interaction types (built-in ones are not stored)."""

    async def all(self) -> list[StoredPolicy]:
        """Every stored policy, by interaction type."""
        ...

    async def get(self, interaction_type: str) -> StoredPolicy | None:
        """One type's stored policy."""
        ...

    async def insert(self, policy: RoutingPolicy, source: PolicySource) -> StoredPolicy:
        """Stores a new policy; DuplicateKey when its type has one."""
        ...

    async def update(self, policy: RoutingPolicy, source: PolicySource) -> StoredPolicy | None:
        """Replaces its type's stored policy; None when there is none."""
        ...

    async def delete(self, interaction_type: str) -> bool:
        """Removes a type's stored policy; whether there was one."""
        ...


class QualityTracks(Protocol):
    """Each agent's recent outcomes per interaction type, and the pool's
    (`domain.quality.Track`), which rank eligible agents of like proficiency."""

    async def record_completion(self, agent_id: str, interaction_type: str, resolved: bool) -> None:
        """One more completion on the agent's track of the type."""
        ...

    async def record_rating(self, agent_id: str, interaction_type: str, csat: int) -> None:
        """One more rating on the agent's track of the type."""
        ...

    async def refresh_pool(self) -> int:
        """Sets each type's pool track to the sum of its agents' tracks now, where it
        differs; how many types changed."""
        ...


class QualityRollups(Protocol):
    """The quality numbers, kept incrementally: what each handoff adds once final (itself, its
    answered offers, a later rating) is recorded with the change and rolled up into tallies
    per group and bucket of time (`domain.quality.Tally`, `Resolution`)."""

    async def record_final(self, handoff_id: str) -> None:
        """The handoff became final in this transaction (completed, cancelled or expired):
        records what it and its answered offers add."""
        ...

    async def record_rating(self, handoff_id: str) -> None:
        """The handoff was rated in this transaction: records the rating."""
        ...

    async def pending(self, limit: int) -> list[Fact]:
        """The oldest facts recorded and not folded into the buckets yet, at most `limit`."""
        ...

    async def fold(self, fact_ids: Sequence[int], sums: Mapping[BucketKey, Tally]) -> bool:
        """Adds `sums` (`domain.quality.fold` of the facts `fact_ids`) to the buckets and
        forgets those facts, so that each counts once; False, writing nothing, when another
        replica is folding now. StoreConflict (roll back) when some were folded meanwhile."""
        ...

    async def tallies(
        self, windows: Sequence[Window], by: Dimension, interaction_type: str | None = None
    ) -> list[Tallies]:
        """The tallies, per group of `by` and whole, of the handoffs created in each of
        `windows` (of one type, if named), in their order, read for all the windows at once:
        the buckets of each window's spans (which tile it), the facts not folded yet and the
        handoffs not final yet. Consistent only on a snapshot (`Store.read(snapshot=True)`)."""
        ...

    async def type_tallies(self, windows: Sequence[Window]) -> list[Tallies]:
        """What the early warnings judge: `tallies` by interaction type, but for the times to
        agent (every `waits` is empty). The store adds everything up itself, by the rules of
        `Tally.count`, so that a read costs a row per window and type however many buckets,
        facts and handoffs it adds. Consistent only on a snapshot."""
        ...


class Retention(Protocol):
    """History past its retention, deleted a batch at a time (each call one batch)."""

    async def lock(self) -> bool:
        """Takes the pruner's turn for this transaction; False if another replica has it."""
        ...

    async def prune_handoffs(self, before: datetime, limit: int) -> int:
        """Deletes the oldest finished handoffs that ended before `before`, at most `limit`,
        with their offers; how many."""
        ...

    async def prune_sessions(self, before: datetime, limit: int) -> int:
        """Deletes the oldest sessions that ended before `before`, at most `limit`."""
        ...

    async def prune_buckets(
        self, resolution: Resolution, dimension: Dimension, before: datetime
    ) -> int:
        """Deletes a slice of the oldest quality buckets of `resolution` and `dimension` that
        start before `before`; how many rows (0: none left)."""
        ...


class PoolQueries(Protocol):
    """Aggregates for ops."""

    async def snapshot(self) -> PoolSnapshot:
        """Counts behind GetPoolStatus. Consistent with each other only on a snapshot
        (`Store.read(snapshot=True)`): on PostgreSQL each statement otherwise sees its own
        moment, and an agent who finished between two of them is counted twice."""
        ...

    async def at_risk(self, horizon: timedelta) -> list[AtRisk]:
        """Per interaction type, by type, with any at risk: waiting handoffs whose deadline
        has passed, and those whose deadline is at most `horizon` ahead."""
        ...


class UnitOfWork(Protocol):
    """One transaction, with the repositories bound to it and its time."""

    @property
    def now(self) -> datetime:
        """The transaction's time: one clock for every lease and expiry."""
        ...

    @property
    def serialized(self) -> bool:
        """True when no other write transaction runs while this one does (the embedded
        store's single writer): what it reads stays true until it commits, so a match it
        found nothing for needs no second look after the commit."""
        ...

    @property
    def agents(self) -> AgentRepository:
        """Agents in this transaction."""
        ...

    @property
    def handoffs(self) -> HandoffRepository:
        """Handoffs in this transaction."""
        ...

    @property
    def offers(self) -> OfferRepository:
        """Offers in this transaction."""
        ...

    @property
    def sessions(self) -> SessionRepository:
        """Sessions in this transaction."""
        ...

    @property
    def pool(self) -> PoolQueries:
        """Pool aggregates in this transaction."""
        ...

    @property
    def quality(self) -> QualityTracks:
        """Quality tracks for ranking in this transaction."""
        ...

    @property
    def rollups(self) -> QualityRollups:
        """The quality numbers kept incrementally, in this transaction."""
        ...

    @property
    def retention(self) -> Retention:
        """Pruning of old history, in this transaction."""
        ...

    @property
    def replicas(self) -> ReplicaRepository:
        """Replicas in this transaction."""
        ...

    @property
    def policies(self) -> RoutingPolicyRepository:
        """Routing policies in this transaction."""
        ...

    async def notify(self, hints: Collection[str]) -> None:
        """Tells the other replicas, when this transaction commits, what it changed (ids only,
        as hints). Nothing to do with one process."""
        ...


class Store(Protocol):
    """Persistence for the dispatch service."""

    async def open(self, writer: str = "") -> None:
        """Connects and migrates the schema to the newest version. `writer` tags the rows
        this process writes, so that other replicas' change feeds can tell them apart."""
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...

    def write(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-write transaction; commits on normal exit, rolls back on exception."""
        ...

    def read(
        self, *, snapshot: bool = False, brief: bool = False
    ) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-only transaction. With `snapshot`, every read in it sees the same moment
        (PostgreSQL's REPEATABLE READ; a SQLite transaction always does); without, each
        statement sees what had committed when it began. `brief` promises a few statements
        of small, bounded cost, which the embedded store then runs in the event loop's own
        thread (no long scans there: they would hold up everything else), and PostgreSQL
        without `snapshot` outside a transaction, a round trip each; its `now` is then the
        replica's clock, not the database's."""
        ...

    @property
    def exclusive(self) -> bool:
        """True when this process is the only one that can use the database (SQLite, under
        its file lock): every other replica on record is dead."""
        ...

    @property
    def background_writers(self) -> int | None:
        """How many of the store's connections background work (matching) may hold at once,
        so that the rest stay free for calls and agent streams; None: no limit (the embedded
        store's one writer queues and groups every unit of work)."""
        ...

    def listener(
        self, on_hint: Callable[[str], None], on_reset: Callable[[], None]
    ) -> Listener | None:
        """A listener for other replicas' hints (None where there is nobody to listen to)."""
        ...

    async def vacuum(self) -> dict[str, float]:
        """Reclaims the row versions that the hot path's updates and deletes left in its
        tables, where the database does not do it itself (PostgreSQL with autovacuum off;
        SQLite reuses the room at once). Returns the tables it vacuumed, each with the
        seconds it took: none where there was nothing to do, or another replica was at it."""
        ...

    @property
    def round_trips(self) -> RoundTrips:
        """The round trips this store has made to its database (see `trips`)."""
        ...


class Listener(Protocol):
    """Receives other replicas' hints on a connection of its own. Hints are lost while it is
    disconnected; `on_reset` is called after every (re)connection so that callers can look
    at everything again."""

    async def run(self) -> None:
        """Listens until cancelled, reconnecting with backoff."""
        ...


__all__ = [
    "AgentRepository",
    "Capacity",
    "DuplicateKey",
    "EligibleSupply",
    "HandoffRepository",
    "Listener",
    "OfferRepository",
    "PoolQueries",
    "PoolSnapshot",
    "QualityTracks",
    "ReplicaRepository",
    "SessionRepository",
    "Store",
    "StoreConflict",
    "StoreError",
    "UnitOfWork",
]
