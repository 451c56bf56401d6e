"""Offers made inside another use case's transaction: a new handoff offered to a free agent by
RequestHandoff itself, a freed agent offered its next handoff by CompleteInteraction itself.

Such an offer attempt must never leave half a claim behind when it loses a race (the agent's
slot taken meanwhile): the handoff stays queued as it was, and the surrounding transaction
(the request, the completion) goes on and commits. Where transactions run concurrently
(PostgreSQL), what the attempt could not see is looked at again after the commit.
"""

from __future__ import annotations

import uuid

import pytest

from humanline.domain.model import AgentProfile, AgentStatus, HandoffState
from humanline.service.events import Effects
from humanline.service.transitions import LostRace, make_offer
from humanline.v1 import handoff_pb2
from tests.conftest import Served
from tests.support.client import Stubs
from tests.unit import builders


async def test_a_request_is_offered_at_once_and_a_completion_hands_over_the_next(
    client: Stubs, served: Served
) -> None:
    await client.create_agent("ann", {"billing": 3})
    ann = client.agent("ann")
    await ann.hello()

    first = await client.request_handoff(skills={"billing": 1})
    assert first.state == handoff_pb2.HANDOFF_STATE_OFFERED  # in the request's transaction
    queued = await client.request_handoff(skills={"billing": 1})
    assert queued.state == handoff_pb2.HANDOFF_STATE_QUEUED  # ann is busy with the first
    interaction = await ann.accept((await ann.offer()).offer_id)

    transactions = served.app.store._group.units if served.app.store.is_sqlite else None  # type: ignore[attr-defined]
    await client.complete("ann", interaction.interaction_id)
    # The completion's own transaction offered the queued handoff: no second one for it.
    assert (await client.get_handoff(queued.handoff_id)).state == handoff_pb2.HANDOFF_STATE_OFFERED
    if transactions is not None:
        await served.app.dispatcher.settled()
        assert served.app.store._group.units == transactions + 1  # type: ignore[attr-defined]
    assert (await ann.offer()).details.handoff_id == queued.handoff_id


async def test_a_lost_agent_claim_changes_nothing_and_the_transaction_goes_on(
    served: Served,
) -> None:
    app = served.app
    await app.pool.create_agent(
        "bob",
        AgentProfile(display_name="Bob", skills={"billing": 3}, languages=frozenset(), capacity=1),
    )
    bob = await app.sessions.connect("bob", AgentStatus.AVAILABLE)  # no stream: dropped below
    handoff = builders.handoff(
        str(uuid.uuid4()), request_id=str(uuid.uuid4()), skills={"billing": 1}
    )
    async with app.store.write() as uow:
        await uow.handoffs.insert(handoff)
        stale = await uow.agents.get("bob")
        assert stale is not None
        assert await uow.agents.reserve("bob")  # its only slot goes elsewhere meanwhile
        fx = Effects()
        with pytest.raises(LostRace):
            await make_offer(uow, handoff, stale, app.policy, fx)
        assert fx.agent_events == []  # nobody is told of an offer that was not made
        now = await uow.handoffs.get(handoff.id)
        assert now is not None
        assert now.state is HandoffState.QUEUED
        assert now.offer_id is None
        assert now.agent_id is None
        assert await uow.offers.pending_for_agent("bob") == []
        # The transaction is still good: its other writes commit with it.
        await uow.agents.set_misses("bob", 1)
    async with app.store.read() as uow:
        agent = await uow.agents.get("bob")
    assert agent is not None
    assert agent.consecutive_misses == 1
    app.sessions.dropped(bob.channel, clean=False)


async def test_what_an_attempt_could_not_see_is_matched_after_the_commit_where_others_write(
    served: Served,
) -> None:
    """A request that finds no free agent leaves its handoff to a second look after the commit
    on PostgreSQL, where a completion committing at the same moment may have freed an agent
    this transaction could not see; the embedded store's one writer needs none."""
    app = served.app
    handoff = builders.handoff(str(uuid.uuid4()), request_id=str(uuid.uuid4()))
    async with app.store.write() as uow:
        await uow.handoffs.insert(handoff)
        fx = Effects()
        kept = await app.handoffs._offer_at_once(uow, handoff, fx)
    assert kept.state is HandoffState.QUEUED
    assert fx.match_handoffs == ([] if app.store.is_sqlite else [handoff.id])  # type: ignore[attr-defined]
