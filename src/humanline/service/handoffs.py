"""Bot use cases: request a human, look at the handoff, watch it, cancel it, report the
customer's feedback."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

from humanline.domain.access import Principal, require_handoff_access
from humanline.domain.errors import AlreadyExists, FailedPrecondition, NotFound
from humanline.domain.matching import can_wait_for
from humanline.domain.model import (
    Feedback,
    Handoff,
    HandoffRequest,
    HandoffState,
    Offer,
    RescindReason,
    new_id,
)
from humanline.domain.risk import decide
from humanline.domain.rules import DispatchPolicy
from humanline.service.dispatcher import Dispatcher
from humanline.service.estimates import WaitEstimates
from humanline.service.events import Effects, EventHub
from humanline.service.policies import PolicyCache
from humanline.service.transitions import (
    LostRace,
    offer_to_best_agent,
    retry_conflicts,
    withdraw_offer,
)
from humanline.store.port import DuplicateKey, Store, StoreConflict, UnitOfWork


@dataclass(frozen=True, slots=True)
class HandoffView:
    """A handoff as a bot sees it: with its place in the queue, its estimated wait and the
    name of the agent holding it."""

    handoff: Handoff
    position: int
    estimated_wait: timedelta | None
    agent_name: str | None
    offers: tuple[Offer, ...] = ()  # every offer of it so far, oldest first


class Handoffs:
    """Handoff requests from bots."""

    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        hub: EventHub,
        policy: DispatchPolicy,
        policies: PolicyCache,
        *,
        watch_interval: float = 0.5,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._hub = hub
        self._policy = policy
        self._policies = policies
        self._watch_interval = watch_interval
        self._estimates = WaitEstimates(store, policy)

    @retry_conflicts
    async def request(self, request: HandoffRequest, bot_id: str) -> HandoffView:
        """Queues a handoff for bot `bot_id`, durably, or returns the one it already made
        under its request id."""
        fingerprint = request.fingerprint()  # of what the bot sent
        choice = await self._policies.choose(request.interaction_type)
        async with self._dispatcher.transaction() as (uow, fx):
            known_online = False
            if request.preferred_agent_id is not None:
                known = await uow.agents.get(request.preferred_agent_id)
                known_online = known is not None and can_wait_for(known)
            route = functools.partial(
                decide,
                request,
                choice,
                self._policy.targets,
                uow.now,
                known_agent_online=known_online,
            )
            routed = route()
            level = routed.plan.expert_level
            if routed.plan.experts_from is not None and level is not None:
                skills, language = routed.request.required_skills, routed.request.language
                if not await uow.agents.online_below(skills, language, level):
                    routed = route(others_online=False)  # nobody to keep the experts for
            handoff = Handoff(
                id=new_id(),
                request=routed.request,
                fingerprint=fingerprint,
                state=HandoffState.QUEUED,
                created_at=uow.now,
                deadline=routed.deadline,
                requeue_count=0,
                agent_id=None,
                offer_id=None,
                assigned_at=None,
                ended_at=None,
                completion=None,
                bot_id=bot_id,
                routing=routed.explanation,
                plan=routed.plan,
                agent_order=routed.agent_order,
                risk_class=routed.risk_class,
                quality_ranked=routed.quality_ranked,
            )
            try:
                await uow.handoffs.insert(handoff)  # the common case first: one statement
            except DuplicateKey:
                existing = await uow.handoffs.get_by_request_id(request.request_id)
                if existing is None:  # taken by a transaction that then rolled back
                    raise StoreConflict(f"request_id {request.request_id} in flux") from None
                # Another bot's key says nothing about that bot's handoff, not even that it is.
                if existing.fingerprint != fingerprint or existing.bot_id != bot_id:
                    raise AlreadyExists(
                        "request_id was already used for a different handoff",
                        reason="REQUEST_ID_REUSED",
                        metadata={"request_id": request.request_id},
                    ) from None
                handoff = existing
            else:
                fx.changed(handoff, moved=True)
                if handoff.review_at is not None:
                    fx.wake(handoff.review_at)
                fx.log(
                    "handoff_queued",
                    handoff_id=handoff.id,
                    request_id=request.request_id,
                    interaction_type=request.interaction_type,
                    urgency=handoff.request.urgency.name,
                    asked_urgency=request.urgency.name,
                    skills=[r.skill for r in handoff.request.required_skills],
                    policy=choice.policy.interaction_type,
                    known_agent=request.preferred_agent_id,
                    known_agent_waited=handoff.plan.preferred_until is not None,
                )
                handoff = await self._offer_at_once(uow, handoff, fx)
            # The hot path: a new handoff's answer leaves out its offers (GetHandoff has them).
            view = await self._view(uow, handoff, history=False)
        return await self._estimated(view)

    async def _offer_at_once(self, uow: UnitOfWork, handoff: Handoff, fx: Effects) -> Handoff:
        """Offers a new handoff to a free eligible agent in its own transaction, which saves
        a transaction and a commit before the offer; returns it as it is now. Whatever this
        leaves queued is matched again after the commit, unless the store's one writer
        guarantees that nothing it could not see now was changed meanwhile."""
        try:
            target = await offer_to_best_agent(uow, handoff, self._policy, fx)
        except LostRace:
            fx.match_handoff(handoff.id)
            return handoff
        if target is not None and target.id == handoff.id:
            return target
        if target is not None or not uow.serialized:
            fx.match_handoff(handoff.id)
        return handoff

    async def get(self, handoff_id: str, caller: Principal) -> HandoffView:
        """The handoff with its queue position and estimated wait, if `caller` may see it."""
        async with self._store.read() as uow:
            view = await self._view(uow, await self._handoff(uow, handoff_id, caller))
        return await self._estimated(view)

    async def stop(self) -> None:
        """Stops reading numbers for estimates (before the store closes)."""
        await self._estimates.stop()

    @retry_conflicts
    async def cancel(self, handoff_id: str, caller: Principal) -> HandoffView:
        """Cancels a waiting handoff (the customer left); a pending offer is rescinded."""
        async with self._dispatcher.transaction() as (uow, fx):
            handoff = await self._handoff(uow, handoff_id, caller)
            if handoff.state is not HandoffState.CANCELLED:
                if not handoff.state.waiting:
                    raise FailedPrecondition(
                        f"a handoff that is {handoff.state.value.lower()} cannot be cancelled",
                        reason="HANDOFF_NOT_CANCELLABLE",
                        metadata={"handoff_id": handoff_id, "state": handoff.state.value},
                    )
                offer_id = handoff.offer_id if handoff.state is HandoffState.OFFERED else None
                if offer_id is not None:
                    offer = await uow.offers.get(offer_id)
                    if offer is not None:
                        await withdraw_offer(
                            uow, offer, RescindReason.HANDOFF_CANCELLED, fx, requeue=False
                        )
                # Only as read: an offer made or taken meanwhile (read QUEUED, now OFFERED)
                # must not be left pending on a cancelled handoff; the retry sees it.
                cancelled = await uow.handoffs.cancel(handoff_id, offer_id, uow.now)
                if cancelled is None:
                    raise StoreConflict(f"handoff {handoff_id} changed while being cancelled")
                await uow.rollups.record_final(handoff_id)
                handoff = cancelled
                fx.changed(handoff, moved=True)
                fx.log("handoff_cancelled", handoff_id=handoff_id)
            view = await self._view(uow, handoff)
        return await self._estimated(view)

    @retry_conflicts
    async def record_feedback(
        self, handoff_id: str, feedback: Feedback, caller: Principal
    ) -> HandoffView:
        """Records the customer's feedback on a completed handoff; the same feedback again
        returns it unchanged, other feedback is refused."""
        async with self._dispatcher.transaction() as (uow, fx):
            handoff = await self._handoff(uow, handoff_id, caller)
            if handoff.feedback is not None:
                if handoff.feedback.fingerprint() != feedback.fingerprint():
                    raise AlreadyExists(
                        "other feedback was recorded for this handoff",
                        reason="FEEDBACK_ALREADY_RECORDED",
                        metadata={"handoff_id": handoff_id},
                    )
            elif handoff.state is not HandoffState.COMPLETED:
                raise FailedPrecondition(
                    f"a handoff that is {handoff.state.value.lower()} has no feedback yet: "
                    "it comes after completion",
                    reason="HANDOFF_NOT_COMPLETED",
                    metadata={"handoff_id": handoff_id, "state": handoff.state.value},
                )
            else:
                recorded = await uow.handoffs.record_feedback(handoff_id, feedback, uow.now)
                if recorded is None:  # another report came first: the retry judges it
                    raise StoreConflict(f"handoff {handoff_id} got feedback meanwhile")
                handoff = recorded
                await uow.rollups.record_rating(handoff_id)
                if handoff.agent_id is not None:
                    await uow.quality.record_rating(
                        handoff.agent_id, handoff.request.interaction_type, feedback.csat
                    )
                fx.changed(handoff)
                fx.log(
                    "feedback_recorded",
                    handoff_id=handoff_id,
                    interaction_type=handoff.request.interaction_type,
                    agent_id=handoff.agent_id,
                    csat=feedback.csat,
                    contacted_again=feedback.contacted_again,
                )
            view = await self._view(uow, handoff)
        return view

    async def watch(self, handoff_id: str, caller: Principal) -> AsyncIterator[HandoffView]:
        """The handoff now, then after every state change and whenever the queue moves while
        it waits; ends after a terminal state."""
        with self._hub.watch(handoff_id) as watch:
            view = await self.get(handoff_id, caller)
            last: tuple[object, ...] | None = None
            while True:
                key = (view.handoff, view.position, view.estimated_wait, view.agent_name)
                if key != last:
                    yield view
                    last = key
                if view.handoff.state.terminal:
                    return
                snapshot = await watch.next(self._watch_interval)
                async with self._store.read() as uow:
                    handoff = snapshot or await self._handoff(uow, handoff_id, caller)
                    view = await self._view(uow, handoff)
                view = await self._estimated(view)

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _handoff(uow: UnitOfWork, handoff_id: str, caller: Principal) -> Handoff:
        handoff = await uow.handoffs.get(handoff_id)
        if handoff is None:
            raise NotFound.of("handoff", handoff_id)
        require_handoff_access(caller, handoff.id, handoff.bot_id)
        return handoff

    @staticmethod
    async def _view(uow: UnitOfWork, handoff: Handoff, *, history: bool = True) -> HandoffView:
        """The handoff with what the transaction tells of it: its place in the queue, the
        name of its agent, and (with `history`) every offer of it so far. The estimate
        comes after the transaction (`_estimated`)."""
        offers = tuple(await uow.offers.for_handoff(handoff.id)) if history else ()
        if handoff.state.waiting:
            position = await uow.handoffs.position(handoff)
            return HandoffView(handoff, position, None, None, offers)
        agent_name = None
        if handoff.state in (HandoffState.ASSIGNED, HandoffState.COMPLETED) and handoff.agent_id:
            agent = await uow.agents.get(handoff.agent_id)
            agent_name = agent.profile.display_name if agent is not None else None
        return HandoffView(handoff, 0, None, agent_name, offers)

    async def _estimated(self, view: HandoffView) -> HandoffView:
        """The view with the estimated wait of a waiting handoff."""
        if not view.handoff.state.waiting:
            return view
        return replace(view, estimated_wait=await self._estimates.wait(view.handoff))
