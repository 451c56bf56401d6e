"""Agent use cases: log in, resume, set status, accept, decline, complete, drop.

Presence is a lease: an agent is eligible for offers only while its stream is attached here
and heartbeating. A dropped stream starts a grace period during which the session, its status
and its accepted interactions survive and a resume (with the session's token) picks them up;
pending offers are rescinded at once. Closing the stream cleanly is a log-out.

A second log-in of the same agent takes the session over: the older stream is told to end
and its pending offers are rescinded; the agent's accepted interactions stay with the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from humanline.domain.errors import (
    Aborted,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from humanline.domain.model import (
    Agent,
    AgentState,
    AgentStatus,
    Completion,
    DeclineReason,
    Interaction,
    Offer,
    OfferState,
    Outcome,
    RescindReason,
    Session,
    SessionEndReason,
    SessionState,
    StatusChangeReason,
)
from humanline.domain.rules import DispatchPolicy
from humanline.service.dispatcher import Dispatcher
from humanline.service.events import (
    CLOSE_DETACHED,
    CLOSE_DRAINING,
    CLOSE_REPLACED,
    AgentChannel,
    AgentEvent,
    AssignmentMade,
    Draining,
    Effects,
    EventHub,
    OfferMade,
    OfferWithdrawn,
    Reconcile,
    StatusUpdated,
    StreamClosing,
)
from humanline.service.transitions import (
    LostRace,
    close_to_offers,
    end_known_agent_waits,
    expire_grace,
    grace_over,
    interactions_of,
    offer_earliest_work,
    retry_conflicts,
    start_grace,
    withdraw_pending_offers,
)
from humanline.store.port import DuplicateKey, Store, StoreError, UnitOfWork

log = structlog.get_logger("humanline.agents")

# Sessions handed over at once by a drain (each is one short transaction).
DRAIN_CONCURRENCY = 16


def _resume_refused(agent_id: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the resume token is not valid: {why}; send hello for a new session",
        reason="RESUME_TOKEN_INVALID",
        metadata={"agent_id": agent_id},
    )


def _withdrawal_reason(offer: Offer) -> RescindReason | None:
    """Why a once-pending offer is no longer pending, as the agent should hear it unprompted;
    None if the agent itself answered it: the answer to its accept or decline says so, and
    may still be on its way behind the comparison that found the offer gone (announced here
    too, a declined offer was rescinded twice)."""
    match offer.state:
        case OfferState.EXPIRED:
            return RescindReason.EXPIRED
        case OfferState.RESCINDED:
            return offer.rescind_reason or RescindReason.SESSION_ENDED
        case _:
            return None


def _announced_unprompted(agent: Agent) -> bool:
    """Whether a comparison should tell the agent its status. Not one the agent asked for: the
    answer to its command says so (or the welcome, at log-in), and may still be on its way
    behind the comparison that read it (announced here too, the change was heard twice and
    the app took the second for news)."""
    return (
        agent.status is not AgentStatus.OFFLINE
        and agent.status_reason is not StatusChangeReason.AGENT_REQUEST
    )


def hash_token(token: str) -> str:
    """Resume tokens are stored only as digests."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Connection:
    """A logged-in stream: what its welcome says, and the channel it reads events from."""

    session: Session
    resume_token: str
    agent: Agent
    interactions: list[Interaction]
    channel: AgentChannel
    resumed: bool


class AgentSessions:
    """Agent sessions and the commands agents send."""

    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        hub: EventHub,
        policy: DispatchPolicy,
        *,
        replica_id: str,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._hub = hub
        self._policy = policy
        self._replica_id = replica_id
        self._steps: set[asyncio.Task[None]] = set()

    @property
    def policy(self) -> DispatchPolicy:
        """The dispatch numbers agents are told about (heartbeat, grace)."""
        return self._policy

    # --- sessions ------------------------------------------------------------------------

    async def connect(self, agent_id: str, status: AgentStatus) -> Connection:
        """Starts a new session, taking over any earlier session of the agent."""
        connection = await self._log_in(agent_id, status)
        self._attach(connection.channel)
        return connection

    @retry_conflicts
    async def _log_in(self, agent_id: str, status: AgentStatus) -> Connection:
        """The new session, committed; its stream is not attached yet."""
        channel = AgentChannel(agent_id, str(uuid.uuid4()))
        token = secrets.token_urlsafe(32)
        try:
            async with self._dispatcher.transaction() as (uow, fx):
                agent = await self._agent(uow, agent_id)
                old = await uow.sessions.live_for_agent(agent_id)
                if old is not None:
                    await self._retire(uow, old, fx)
                session = Session(
                    id=channel.session_id,
                    agent_id=agent_id,
                    state=SessionState.CONNECTED,
                    token_hash=hash_token(token),
                    replica_id=self._replica_id,
                    connection_id=channel.connection_id,
                    created_at=uow.now,
                    disconnected_at=None,
                    grace_expires_at=None,
                    ended_at=None,
                    end_reason=None,
                )
                await uow.sessions.insert(session)
                agent = await uow.agents.set_presence(agent_id, status=status, connected=True)
                interactions = await interactions_of(uow, agent_id)
                fx.match_agent(agent_id)
                fx.log(
                    "agent_connected", agent_id=agent_id, session_id=session.id, status=status.value
                )
        except DuplicateKey as exc:
            raise Aborted(
                "another log-in of this agent is in progress; retry",
                reason="CONCURRENT_LOGIN",
                metadata={"agent_id": agent_id},
            ) from exc
        channel.status = agent.status
        return Connection(session, token, agent, interactions, channel, resumed=False)

    async def _retire(self, uow: UnitOfWork, old: Session, fx: Effects) -> None:
        """Ends an earlier session of an agent who logs in again."""
        if old.state is SessionState.DISCONNECTED and grace_over(old, uow):
            await expire_grace(uow, old, fx)
            return
        await uow.sessions.end(old.id, SessionEndReason.REPLACED, uow.now)
        await withdraw_pending_offers(
            uow, old.agent_id, RescindReason.SESSION_ENDED, fx, session_id=old.id
        )
        fx.close_session(old.agent_id, old.id, CLOSE_REPLACED)
        fx.log("session_replaced", agent_id=old.agent_id, session_id=old.id)

    async def resume(self, agent_id: str, resume_token: str) -> Connection:
        """Resumes a session within its grace period, with its status and its work."""
        connection = await self._reopen(agent_id, resume_token)
        self._attach(connection.channel)
        return connection

    @retry_conflicts
    async def _reopen(self, agent_id: str, resume_token: str) -> Connection:
        """The resumed session, committed; its new stream is not attached yet."""
        connection: Connection | None = None
        async with self._dispatcher.transaction() as (uow, fx):
            await self._agent(uow, agent_id)
            session = await uow.sessions.get_by_token_hash(hash_token(resume_token))
            if (
                session is None
                or session.agent_id != agent_id
                or session.state is SessionState.ENDED
            ):
                raise _resume_refused(agent_id, "its session has ended")
            if session.state is SessionState.DISCONNECTED and grace_over(session, uow):
                await expire_grace(uow, session, fx)  # committed: the session is over for good
            else:
                connection = await self._reattach(uow, session, resume_token, fx)
        if connection is None:
            raise _resume_refused(agent_id, "its grace period is over")
        return connection

    async def _reattach(
        self, uow: UnitOfWork, session: Session, resume_token: str, fx: Effects
    ) -> Connection:
        channel = AgentChannel(session.agent_id, session.id)
        if session.state is SessionState.CONNECTED:
            # An older stream still holds the session: it is told to end, and offers sent on
            # it are rescinded.
            await withdraw_pending_offers(uow, session.agent_id, RescindReason.SESSION_ENDED, fx)
        resumed = await uow.sessions.reconnect(session.id, self._replica_id, channel.connection_id)
        if resumed is None:
            raise Aborted.changed("session", session.id)
        current = await self._agent(uow, session.agent_id)
        agent = await uow.agents.set_presence(
            session.agent_id, status=current.status, connected=True
        )
        interactions = await interactions_of(uow, session.agent_id)
        channel.status = agent.status
        fx.match_agent(session.agent_id)
        fx.log("agent_resumed", agent_id=session.agent_id, session_id=session.id)
        return Connection(resumed, resume_token, agent, interactions, channel, resumed=True)

    def _attach(self, channel: AgentChannel) -> None:
        """Makes a logged-in stream the agent's, then has it compare itself with the store
        once. An offer to the agent committed after the log-in read the agent's offers and
        before this moment reached no stream: its event (here) or its hint (from another
        replica) found none attached, and the change feed skips the agent, whose last write
        was the log-in's own. From here on events and hints reach the stream, and the
        comparison, queued behind the welcome, reads the store after this moment, so every
        such offer is shown (or every stale one taken back) at once.

        A stream that logged in while this replica drains (the servicer refuses new ones,
        but one may have been under way) is handed over at once."""
        self._hub.attach(channel)
        channel.put(Reconcile())
        if self._hub.draining and not self._hub.closing:
            self._background(self._hand_over(channel), "agent-hand-over")

    def dropped(self, channel: AgentChannel, *, clean: bool) -> None:
        """The stream behind `channel` ended. Runs the drop in a task of its own so that it
        completes even while the stream's handler is being cancelled."""
        self._hub.detach(channel)
        self._background(self._drop(channel, clean=clean), "agent-drop")

    def _background(self, step: Coroutine[Any, Any, None], name: str) -> None:
        """Runs a session's step in a task of its own, which `drained` waits for."""
        task = asyncio.create_task(step, name=name)
        self._steps.add(task)
        task.add_done_callback(self._steps.discard)

    async def drained(self) -> None:
        """Waits for drops and hand-overs still being recorded (shutdown)."""
        while self._steps:
            await asyncio.gather(*list(self._steps), return_exceptions=True)

    # --- drain ----------------------------------------------------------------------------

    async def drain(self) -> int:
        """Hands every agent stream of this replica over to the others (the first step of a
        graceful stop): each session's grace period starts now, so its agent gets no more
        offers here and its pending offers go back to the queue; the stream is told to move
        (`Draining`, with the grace deadline) and ends; the agent resumes on another replica
        keeping its accepted work. Returns how many streams were handed over."""
        channels = self._hub.drain()
        slots = asyncio.Semaphore(DRAIN_CONCURRENCY)

        async def hand_over(channel: AgentChannel) -> None:
            async with slots:
                await self._hand_over(channel)

        await asyncio.gather(*(hand_over(channel) for channel in channels))
        return len(channels)

    async def _hand_over(self, channel: AgentChannel) -> None:
        channel.handing_over = True  # from now on the drain, not the store, ends the stream
        resume_before: datetime | None = None
        try:
            resume_before = await self._start_hand_over(channel)
        except (StoreError, LostRace) as exc:
            # The stream still ends: its drop (or, failing that, the other replicas' reaping
            # of this one) starts the grace period instead.
            log.warning("agent_hand_over_failed", agent_id=channel.agent_id, error=str(exc))
        channel.put(Draining(resume_before))
        channel.close(CLOSE_DRAINING)

    @retry_conflicts
    async def _start_hand_over(self, channel: AgentChannel) -> datetime | None:
        """Starts the grace period of the stream's session; None if the session is no longer
        this stream's (resumed elsewhere or ended meanwhile)."""
        async with self._dispatcher.transaction() as (uow, fx):
            session = await self._streams_session(uow, channel)
            if session is None:
                return None
            return await start_grace(
                uow, session, channel.connection_id, self._policy, fx, reason="draining"
            )

    async def _drop(self, channel: AgentChannel, *, clean: bool) -> None:
        with contextlib.suppress(LostRace):  # moved meanwhile (a drain, a resume elsewhere)
            await self._record_drop(channel, clean=clean)

    @retry_conflicts
    async def _record_drop(self, channel: AgentChannel, *, clean: bool) -> None:
        async with self._dispatcher.transaction() as (uow, fx):
            session = await self._streams_session(uow, channel)
            if session is None:
                return  # taken over or ended meanwhile: the newer connection owns it
            holding = await uow.offers.accepted_for_agent(channel.agent_id)
            if clean and not holding:
                await close_to_offers(uow, channel.agent_id, AgentStatus.OFFLINE)
                await withdraw_pending_offers(
                    uow, channel.agent_id, RescindReason.SESSION_ENDED, fx
                )
                await uow.sessions.end(session.id, SessionEndReason.LOGGED_OUT, uow.now)
                await end_known_agent_waits(uow, channel.agent_id, fx)
                fx.log("agent_logged_out", agent_id=channel.agent_id, session_id=session.id)
            else:
                reason = "logged_out_with_work" if clean else "stream_lost"
                await start_grace(
                    uow, session, channel.connection_id, self._policy, fx, reason=reason
                )

    async def reconcile(self, channel: AgentChannel) -> list[AgentEvent]:
        """What the stream behind `channel` has not been told yet, by the store: offers made
        or taken back and status changes made elsewhere, or that the session is no longer this
        stream's. `channel.admit` drops what the stream already said. Nothing for a stream
        being handed over: the drain tells it to move and ends it (read now, the store would
        say the session left it, and the stream would end before it is told)."""
        if channel.handing_over:
            return []
        events = await self._compare(channel)
        return [] if channel.handing_over else events  # (it may have begun meanwhile)

    async def _compare(self, channel: AgentChannel) -> list[AgentEvent]:
        async with self._store.read() as uow:
            session = await uow.sessions.get(channel.session_id)
            if (
                session is None
                or session.connection_id != channel.connection_id  # resumed elsewhere
                or session.end_reason is SessionEndReason.REPLACED  # a newer log-in took over
            ):
                return [StreamClosing(CLOSE_REPLACED)]
            if session.state is not SessionState.CONNECTED:  # others think this replica died
                return [StreamClosing(CLOSE_DETACHED)]
            events: list[AgentEvent] = []
            pending = {o.id: o for o in await uow.offers.pending_for_agent(channel.agent_id)}
            for offer in pending.values():
                # One past its expiry is not shown: it can no longer be accepted, and the
                # sweeper is about to take it back.
                if offer.id not in channel.shown_offers and offer.expires_at > uow.now:
                    handoff = await uow.handoffs.get(offer.handoff_id)
                    if handoff is not None:
                        events.append(OfferMade(offer, handoff))
            for offer_id in channel.shown_offers - pending.keys():
                gone = await uow.offers.get(offer_id)
                reason = _withdrawal_reason(gone) if gone is not None else None
                if reason is not None:
                    events.append(OfferWithdrawn(offer_id, reason))
            agent = await uow.agents.get(channel.agent_id)
            if agent is not None and _announced_unprompted(agent):
                events.append(StatusUpdated(agent.status, agent.status_reason))
        return events

    # --- commands ------------------------------------------------------------------------

    @retry_conflicts
    async def set_status(self, agent_id: str, status: AgentStatus, command_id: str = "") -> Agent:
        """The agent sets itself available or away; going away rescinds pending offers."""
        async with self._dispatcher.transaction() as (uow, fx):
            await self._agent(uow, agent_id)
            agent = await uow.agents.set_status(
                agent_id,
                status,
                StatusChangeReason.AGENT_REQUEST,
                reset_misses=status is AgentStatus.AVAILABLE,
            )
            if agent is None:
                raise FailedPrecondition(
                    "the agent has no connected session",
                    reason="AGENT_NOT_CONNECTED",
                    metadata={"agent_id": agent_id},
                )
            if status is AgentStatus.AWAY:
                await withdraw_pending_offers(uow, agent_id, RescindReason.AGENT_AWAY, fx)
                await end_known_agent_waits(uow, agent_id, fx)
            else:
                fx.match_agent(agent_id)
            fx.to_agent(
                agent_id, StatusUpdated(status, StatusChangeReason.AGENT_REQUEST, command_id)
            )
            fx.log(
                "agent_status_changed",
                agent_id=agent_id,
                status=status.value,
                reason="agent_request",
            )
        return agent

    @retry_conflicts
    async def accept(self, agent_id: str, offer_id: str, command_id: str = "") -> Interaction:
        """Accepts a pending, unexpired offer of the agent's own. Accepting an offer already
        accepted returns the same interaction."""
        async with self._dispatcher.transaction() as (uow, fx):
            offer = await self._own_offer(uow, agent_id, offer_id)
            if offer.state is OfferState.ACCEPTED:
                handoff = await uow.handoffs.get(offer.handoff_id)
                assert handoff is not None
                interaction = Interaction(offer, handoff)
            else:
                self._require_pending(offer, uow)
                accepted = await uow.offers.accept(offer_id, agent_id, uow.now)
                handoff = await uow.handoffs.assign(offer.handoff_id, offer_id, uow.now)
                if accepted is None or handoff is None:
                    raise Aborted.changed("offer", offer_id)
                await uow.agents.record_assignment(agent_id, uow.now)
                interaction = Interaction(accepted, handoff)
                fx.changed(handoff, moved=True)
                fx.log(
                    "offer_accepted",
                    offer_id=offer_id,
                    handoff_id=handoff.id,
                    agent_id=agent_id,
                    waited_seconds=round((uow.now - handoff.created_at).total_seconds(), 3),
                )
            fx.to_agent(agent_id, AssignmentMade(interaction, command_id))
        return interaction

    @retry_conflicts
    async def decline(
        self, agent_id: str, offer_id: str, reason: DeclineReason, command_id: str = ""
    ) -> None:
        """Declines a pending offer; the handoff moves on to the next eligible agent and is
        never offered to this agent again."""
        async with self._dispatcher.transaction() as (uow, fx):
            offer = await self._own_offer(uow, agent_id, offer_id)
            self._require_pending(offer, uow, allow_expired=True)
            declined = await uow.offers.decline(offer_id, agent_id, reason, uow.now)
            handoff = await uow.handoffs.return_to_queue(offer.handoff_id, offer_id)
            if declined is None or handoff is None:
                raise Aborted.changed("offer", offer_id)
            await uow.agents.release(agent_id)
            await uow.agents.set_misses(agent_id, 0)
            fx.changed(handoff)
            fx.match_handoff(handoff.id)
            fx.match_agent(agent_id)
            fx.to_agent(agent_id, OfferWithdrawn(offer_id, RescindReason.DECLINED, command_id))
            fx.log(
                "offer_declined",
                offer_id=offer_id,
                handoff_id=handoff.id,
                agent_id=agent_id,
                reason=reason.value,
            )

    @retry_conflicts
    async def complete(
        self, agent_id: str, interaction_id: str, completion: Completion
    ) -> Interaction:
        """Completes the agent's interaction; the same completion again returns the same
        result, a different one is refused."""
        async with self._dispatcher.transaction() as (uow, fx):
            offer = await uow.offers.get(interaction_id, lock=True)
            if offer is None:
                raise NotFound.of("interaction", interaction_id)
            if offer.agent_id != agent_id:
                raise PermissionDenied(
                    "the interaction is held by another agent",
                    reason="INTERACTION_NOT_HELD",
                    metadata={"interaction_id": interaction_id},
                )
            handoff = await uow.handoffs.get(offer.handoff_id)
            assert handoff is not None
            if offer.state is OfferState.COMPLETED:
                stored = await uow.handoffs.completion_fingerprint(handoff.id)
                if stored != completion.fingerprint():
                    raise FailedPrecondition(
                        "the interaction was already completed with other content",
                        reason="INTERACTION_ALREADY_COMPLETED",
                        metadata={"interaction_id": interaction_id},
                    )
                return Interaction(offer, handoff)
            if offer.state is not OfferState.ACCEPTED:
                reason = (
                    "INTERACTION_REQUEUED"
                    if offer.state is OfferState.REVOKED
                    else "INTERACTION_NOT_ACCEPTED"
                )
                raise FailedPrecondition(
                    f"the interaction is not held (offer {offer.state.value.lower()})",
                    reason=reason,
                    metadata={"interaction_id": interaction_id},
                )
            assert offer.decided_at is not None
            completed = await uow.handoffs.complete(
                handoff.id,
                offer.id,
                completion,
                now=uow.now,
                handle_time=uow.now - offer.decided_at,
            )
            finished = await uow.offers.finish(offer.id, OfferState.COMPLETED, uow.now)
            if completed is None or finished is None:
                raise Aborted.changed("interaction", interaction_id)
            await uow.quality.record_completion(
                agent_id, handoff.request.interaction_type, completion.outcome is Outcome.RESOLVED
            )
            await uow.rollups.record_final(handoff.id)
            agent = await uow.agents.release(agent_id)
            fx.changed(completed)
            fx.log(
                "interaction_completed",
                interaction_id=offer.id,
                handoff_id=handoff.id,
                agent_id=agent_id,
                outcome=completion.outcome.value,
            )
            if agent is not None:
                await self._next_offer(uow, agent, fx)
        return Interaction(finished, completed)

    async def _next_offer(self, uow: UnitOfWork, agent: Agent, fx: Effects) -> None:
        """An agent freed a slot: offers it the earliest handoff it can take in the same
        transaction, which saves one. Whatever is left is matched again after the commit,
        unless the store's one writer guarantees nothing changed meanwhile."""
        if agent.state is not AgentState.AVAILABLE:
            return  # away or disconnected: nothing to offer, and nothing to look at later
        try:
            offered = await offer_earliest_work(uow, agent, self._policy, fx)
        except LostRace:
            fx.match_agent(agent.id)
            return
        if offered is None:
            if not uow.serialized:
                fx.match_agent(agent.id)
        elif agent.load + 1 < agent.profile.capacity:
            fx.match_agent(agent.id)  # more slots to fill

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _streams_session(uow: UnitOfWork, channel: AgentChannel) -> Session | None:
        """The stream's session while it is connected through this very stream; None once it
        was resumed elsewhere, taken over, put in its grace period or ended."""
        session = await uow.sessions.get(channel.session_id)
        if (
            session is None
            or session.state is not SessionState.CONNECTED
            or session.connection_id != channel.connection_id
        ):
            return None
        return session

    @staticmethod
    async def _agent(uow: UnitOfWork, agent_id: str) -> Agent:
        agent = await uow.agents.get(agent_id)
        if agent is None:
            raise NotFound.of("agent", agent_id)
        return agent

    @staticmethod
    async def _own_offer(uow: UnitOfWork, agent_id: str, offer_id: str) -> Offer:
        """The agent's offer, locked for the rest of the transaction."""
        offer = await uow.offers.get(offer_id, lock=True)
        if offer is None:
            raise NotFound.of("offer", offer_id)
        if offer.agent_id != agent_id:
            raise PermissionDenied(
                "the offer was made to another agent",
                reason="OFFER_NOT_YOURS",
                metadata={"offer_id": offer_id},
            )
        return offer

    @staticmethod
    def _require_pending(offer: Offer, uow: UnitOfWork, *, allow_expired: bool = False) -> None:
        """Refuses to act on an offer that is no longer open."""
        expired = offer.state is OfferState.EXPIRED or (
            offer.state is OfferState.PENDING and offer.expires_at <= uow.now
        )
        if expired and not (allow_expired and offer.state is OfferState.PENDING):
            raise FailedPrecondition(
                "the offer expired", reason="OFFER_EXPIRED", metadata={"offer_id": offer.id}
            )
        if offer.state is not OfferState.PENDING:
            raise FailedPrecondition(
                f"the offer is no longer open (it was {offer.state.value.lower()})",
                reason=f"OFFER_{offer.state.value}",
                metadata={"offer_id": offer.id},
            )
