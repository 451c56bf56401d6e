"""Steps that several use cases take inside their transaction.

Each step runs on a unit of work, records its consequences in an `Effects`, and raises
`LostRace` when a conditional write did not apply so that the whole transaction rolls back.
The decisions themselves come from `humanline.domain`.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from humanline.domain.matching import Candidate, choose_agent, choose_handoff, why_chosen
from humanline.domain.model import (
    Agent,
    AgentStatus,
    Handoff,
    Interaction,
    Offer,
    OfferState,
    RescindReason,
    Session,
    SessionEndReason,
    new_id,
)
from humanline.domain.routing import Review, review
from humanline.domain.rules import DispatchPolicy, requeue_deadline, requeue_plan
from humanline.service.events import Effects, OfferMade, OfferWithdrawn
from humanline.store.port import DuplicateKey, StoreConflict, UnitOfWork


class LostRace(Exception):
    """A conditional write did not apply: someone else changed the row first."""


CAME_FREE = "the agent came free and this was its work due first"  # an offer's ranking

P = ParamSpec("P")
T = TypeVar("T")
CONFLICT_RETRIES = 8


def retry_conflicts(
    use_case: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Runs a use case again when the database aborted its transaction over a conflict with a
    concurrent one (a deadlock). Safe: nothing of the aborted attempt was written or published,
    as effects follow only a commit."""

    @functools.wraps(use_case)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(CONFLICT_RETRIES):
            try:
                return await use_case(*args, **kwargs)
            except StoreConflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    return wrapper


async def replan(uow: UnitOfWork, handoff: Handoff, due: Review, fx: Effects) -> Handoff:
    """Writes what a review of a queued handoff's wait plan found due: the plan, widened
    skills, and each change said in its routing. Written even when nothing was due: the
    stored review time was then stale (a hold ended early, another replica reviewed first)
    and is set right. `LostRace` when the handoff is no longer queued as it was."""
    routing = "; ".join((handoff.routing, *due.notes)) if due.notes else handoff.routing
    replanned = await uow.handoffs.replan(handoff, due.plan, due.skills, routing)
    if replanned is None:
        raise LostRace(handoff.id)
    if due.plan == handoff.plan:
        return replanned
    fx.changed(replanned)
    fx.match_handoff(replanned.id)  # more agents may take it now
    if replanned.review_at is not None:
        fx.wake(replanned.review_at)
    if replanned.plan.step != handoff.plan.step:
        fx.log(
            "handoff_relaxed",
            handoff_id=replanned.id,
            step=replanned.plan.step,
            skills=[f"{r.skill}:{r.min_proficiency}" for r in replanned.request.required_skills],
        )
    if handoff.plan.preferred_until is not None and replanned.plan.preferred_until is None:
        fx.log("known_agent_wait_over", handoff_id=replanned.id, notes=list(due.notes))
    return replanned


async def make_offer(
    uow: UnitOfWork,
    handoff: Handoff,
    agent: Agent,
    policy: DispatchPolicy,
    fx: Effects,
    ranking: str = "",
) -> Handoff:
    """Offers a queued handoff to an agent with a free slot, `ranking` saying why this agent
    (where it was chosen among others); returns the handoff as offered. Raises `LostRace`
    having changed nothing (but bringing its wait plan up to date) when the handoff is no
    longer queued or the agent has no free slot, so that a caller may go on with its
    transaction."""
    due = review(handoff, uow.now)
    if due.notes:
        # Its plan has something due that the sweep has not reviewed yet (the hold for its
        # known agent or the experts' reserve ended, a step widened it): said before it goes,
        # so that its routing explains who got it. A due expiry is not: an agent has it.
        handoff = await replan(uow, handoff, due, fx)
    offer_id = new_id()
    offered = await uow.handoffs.offer(handoff.id, agent.id, offer_id)
    if offered is None:
        raise LostRace(handoff.id)
    if not await uow.agents.reserve(agent.id):
        # This transaction holds the handoff now: give it back as it was.
        if await uow.handoffs.return_to_queue(handoff.id, offer_id, keep_hold=True) is None:
            raise StoreConflict(f"handoff {handoff.id} changed while held")
        raise LostRace(agent.id)
    offer = Offer(
        id=offer_id,
        handoff_id=handoff.id,
        agent_id=agent.id,
        state=OfferState.PENDING,
        created_at=uow.now,
        expires_at=policy.offer_expiry(uow.now, handoff),
        decided_at=None,
        decline_reason=None,
        rescind_reason=None,
        ranking=ranking,
    )
    try:
        await uow.offers.insert(offer)
    except DuplicateKey as exc:  # a pending offer beside a queued handoff: start over
        raise StoreConflict(f"handoff {handoff.id} has a pending offer") from exc
    fx.to_agent(agent.id, OfferMade(offer, offered))
    fx.changed(offered)
    fx.wake(offer.expires_at)
    fx.log(
        "offer_sent",
        offer_id=offer.id,
        handoff_id=handoff.id,
        agent_id=agent.id,
        urgency=handoff.request.urgency.name,
        interaction_type=handoff.request.interaction_type,
        waited_seconds=round((offer.created_at - handoff.created_at).total_seconds(), 3),
    )
    return offered


async def offer_to_best_agent(
    uow: UnitOfWork, handoff: Handoff, policy: DispatchPolicy, fx: Effects
) -> Handoff | None:
    """Offers a queued handoff to its best eligible agent, unless that agent is eligible for
    an earlier-deadline handoff, which then goes first. Returns the handoff offered (None:
    no eligible agent is free); `LostRace` as `make_offer`."""
    # The store ranks candidates as the domain does (tests hold it to that), so the best one
    # is all there is to read; `choose_agent` checks it. A handoff held for its known agent
    # has that agent as its only candidate.
    now = uow.now
    held_for = handoff.reserved_for(now)
    if held_for is None:
        candidates = await uow.agents.candidates_for(handoff, 1)
        ranking = why_chosen(candidates[0], handoff) if candidates else ""
    else:
        known = await uow.agents.get(held_for)
        candidates = [] if known is None else [Candidate(known)]
        ranking = "the customer's known agent, waited for"
    agent = choose_agent(handoff, candidates, now=now)
    if agent is None:
        return None
    queued = await uow.handoffs.queued_for_agent(agent, 1)
    target = choose_handoff(agent, queued, now=now) or handoff
    if target.id != handoff.id:
        ranking = f"earlier deadline than handoff {handoff.id}, which chose this agent: {ranking}"
    return await make_offer(uow, target, agent, policy, fx, ranking)


async def offer_earliest_work(
    uow: UnitOfWork, agent: Agent, policy: DispatchPolicy, fx: Effects
) -> Handoff | None:
    """Offers an agent with a free slot the earliest-deadline handoff it can take. Returns
    the handoff offered (None: nothing it can take is queued); `LostRace` as `make_offer`."""
    queued = await uow.handoffs.queued_for_agent(agent, 1)
    handoff = choose_handoff(agent, queued, now=uow.now)
    if handoff is None:
        return None
    return await make_offer(uow, handoff, agent, policy, fx, CAME_FREE)


async def withdraw_offer(
    uow: UnitOfWork,
    offer: Offer,
    reason: RescindReason,
    fx: Effects,
    *,
    requeue: bool = True,
    session_id: str | None = None,
) -> bool:
    """Takes a pending offer back from its agent. With `requeue` the handoff returns to the
    queue at its old place; otherwise the caller ends the handoff. False if the offer was no
    longer pending."""
    rescinded = await uow.offers.rescind(offer.id, reason, uow.now)
    if rescinded is None:
        return False
    await uow.agents.release(offer.agent_id)
    if requeue:
        handoff = await uow.handoffs.return_to_queue(offer.handoff_id, offer.id)
        if handoff is None:
            raise LostRace(offer.handoff_id)
        fx.changed(handoff)
        fx.match_handoff(handoff.id)
    fx.to_agent(offer.agent_id, OfferWithdrawn(offer.id, reason), session_id=session_id)
    fx.match_agent(offer.agent_id)
    fx.log(
        "offer_rescinded",
        offer_id=offer.id,
        handoff_id=offer.handoff_id,
        agent_id=offer.agent_id,
        reason=reason.value,
    )
    return True


async def close_to_offers(uow: UnitOfWork, agent_id: str, status: AgentStatus) -> None:
    """Marks the agent disconnected (with `status`), before its pending offers are taken back.
    In this order on PostgreSQL: an offer being made holds the agent's row from reserving its
    slot to its commit, so this write waits for it, and the read of pending offers after it
    sees the offer; one begun later finds the agent not ready. Taken back first, an offer
    committed just after that read stayed pending to an agent with no stream."""
    await uow.agents.set_presence(agent_id, status=status, connected=False)


async def withdraw_pending_offers(
    uow: UnitOfWork,
    agent_id: str,
    reason: RescindReason,
    fx: Effects,
    *,
    session_id: str | None = None,
) -> None:
    """Takes back every pending offer of an agent; their handoffs keep their places."""
    for offer in await uow.offers.pending_for_agent(agent_id):
        await withdraw_offer(uow, offer, reason, fx, session_id=session_id)


async def end_known_agent_waits(uow: UnitOfWork, agent_id: str, fx: Effects) -> None:
    """The agent went away, lost its stream or logged out: handoffs waiting for it as their
    customer's known agent stop waiting and go to whoever may take them."""
    for handoff in await uow.handoffs.end_holds_for(agent_id):
        fx.changed(handoff)
        fx.match_handoff(handoff.id)
        fx.log("known_agent_wait_over", handoff_id=handoff.id, agent_id=agent_id)


async def requeue_interactions(uow: UnitOfWork, agent_id: str, fx: Effects) -> None:
    """The agent is gone for good: its accepted interactions go back to the queue, due now,
    ahead of everything queued later."""
    for offer in await uow.offers.accepted_for_agent(agent_id):
        handoff = await uow.handoffs.get(offer.handoff_id)
        if handoff is None:
            raise LostRace(offer.handoff_id)
        requeued = await uow.handoffs.requeue(
            handoff,
            offer.id,
            requeue_deadline(handoff, uow.now),
            requeue_plan(handoff, uow.now),
        )
        if (
            requeued is None
            or await uow.offers.finish(offer.id, OfferState.REVOKED, uow.now) is None
        ):
            raise LostRace(offer.handoff_id)
        await uow.agents.release(agent_id)
        fx.changed(requeued, moved=True)
        fx.match_handoff(requeued.id)
        fx.log(
            "handoff_requeued",
            handoff_id=requeued.id,
            interaction_id=offer.id,
            agent_id=agent_id,
            requeue_count=requeued.requeue_count,
        )


async def start_grace(
    uow: UnitOfWork,
    session: Session,
    connection_id: str,
    policy: DispatchPolicy,
    fx: Effects,
    *,
    reason: str,
) -> datetime:
    """A session lost its stream: its pending offers return to their places in the queue,
    its agent stops receiving offers, and the grace period starts; accepted work stays.
    Returns when the grace period ends."""
    grace_end = uow.now + policy.grace_period
    # First, so that a session resumed meanwhile loses nothing: LostRace before any write.
    if await uow.sessions.disconnect(session.id, connection_id, uow.now, grace_end) is None:
        raise LostRace(session.id)
    agent = await uow.agents.get(session.agent_id)
    status = agent.status if agent is not None else AgentStatus.AVAILABLE
    await close_to_offers(uow, session.agent_id, status)
    await withdraw_pending_offers(uow, session.agent_id, RescindReason.SESSION_ENDED, fx)
    await end_known_agent_waits(uow, session.agent_id, fx)
    fx.detached(session.agent_id)
    fx.wake(grace_end)
    fx.log("agent_disconnected", agent_id=session.agent_id, session_id=session.id, reason=reason)
    return grace_end


async def expire_grace(uow: UnitOfWork, session: Session, fx: Effects) -> bool:
    """A dropped session's grace period is over: the agent goes offline and its accepted work
    returns to the queue. False if the session was resumed or ended meanwhile."""
    ended = await uow.sessions.end(session.id, SessionEndReason.GRACE_EXPIRED, uow.now)
    if ended is None:
        return False
    await close_to_offers(uow, session.agent_id, AgentStatus.OFFLINE)
    await withdraw_pending_offers(uow, session.agent_id, RescindReason.SESSION_ENDED, fx)
    await requeue_interactions(uow, session.agent_id, fx)
    fx.log(
        "agent_offline", agent_id=session.agent_id, session_id=session.id, reason="grace_expired"
    )
    return True


def grace_over(session: Session, uow: UnitOfWork) -> bool:
    """True if a dropped session's grace period has run out (whether or not swept yet)."""
    return session.grace_expires_at is not None and session.grace_expires_at <= uow.now


async def interactions_of(uow: UnitOfWork, agent_id: str) -> list[Interaction]:
    """The agent's live interactions with their handoffs."""
    result = []
    for offer in await uow.offers.accepted_for_agent(agent_id):
        handoff = await uow.handoffs.get(offer.handoff_id)
        if handoff is not None:
            result.append(Interaction(offer, handoff))
    return result
