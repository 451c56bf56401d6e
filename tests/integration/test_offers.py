"""Offers over real gRPC: decline, expiry and misses, cancel while offered, stale accepts."""

from __future__ import annotations

import grpc
import pytest

from humanline.v1 import agent_pb2, agent_service_pb2, handoff_pb2
from tests.support.client import ConnectRequest, Stubs, error_details


async def test_decline_moves_the_handoff_to_the_next_agent_and_never_back(client: Stubs) -> None:
    await client.create_agent("ann", {"billing": 5})
    await client.create_agent("bob", {"billing": 3})
    ann, bob = client.agent("ann"), client.agent("bob")
    await ann.hello()
    await bob.hello()
    handoff = await client.request_handoff(skills={"billing": 2})

    offer = await ann.offer()  # the more proficient agent first
    answer = await ann.decline(offer.offer_id, agent_service_pb2.DECLINE_REASON_BUSY)
    assert answer.offer_rescinded.reason == agent_service_pb2.RESCIND_REASON_DECLINED
    assert answer.offer_rescinded.offer_id == offer.offer_id

    second = await bob.offer()
    assert second.details.handoff_id == handoff.handoff_id
    await bob.decline(second.offer_id)
    # Nobody left who has not declined it: it waits, and is not offered to ann again.
    assert await ann.quiet(1.5) == []
    queued = await client.get_handoff(handoff.handoff_id)
    assert queued.state == handoff_pb2.HANDOFF_STATE_QUEUED


async def test_unanswered_offer_expires_counts_a_miss_and_two_set_the_agent_away(
    client: Stubs,
) -> None:
    await client.create_agent("sleepy", {"general": 3})
    sleepy = client.agent("sleepy")
    await sleepy.hello()
    first = await client.request_handoff()
    second = await client.request_handoff()

    offer = await sleepy.offer()
    assert offer.details.handoff_id == first.handoff_id
    rescinded = await sleepy.expect("offer_rescinded", timeout=5)
    assert rescinded.reason == agent_service_pb2.RESCIND_REASON_EXPIRED
    assert (await client.get_agent("sleepy")).consecutive_misses == 1

    offer = await sleepy.offer()  # the missed handoff is not offered to it again
    assert offer.details.handoff_id == second.handoff_id
    rescinded = await sleepy.expect("offer_rescinded", timeout=5)
    assert rescinded.reason == agent_service_pb2.RESCIND_REASON_EXPIRED
    status = await sleepy.expect("status_changed")
    assert status.status == agent_pb2.AGENT_STATUS_AWAY
    assert status.reason == agent_service_pb2.STATUS_CHANGE_REASON_MISSED_OFFERS
    assert (await client.get_agent("sleepy")).state == agent_pb2.AGENT_STATE_AWAY

    for handoff in (first, second):  # both back in the queue, not lost
        assert (await client.get_handoff(handoff.handoff_id)).state == (
            handoff_pb2.HANDOFF_STATE_QUEUED
        )
    # Back to available: no offers of what it missed, but new work reaches it.
    answer = await sleepy.set_status(agent_pb2.AGENT_STATUS_AVAILABLE)
    assert answer.status_changed.reason == agent_service_pb2.STATUS_CHANGE_REASON_AGENT_REQUEST
    third = await client.request_handoff()
    assert (await sleepy.offer()).details.handoff_id == third.handoff_id


async def test_a_miss_then_an_accept_resets_the_count(client: Stubs) -> None:
    await client.create_agent("amy", {"general": 3})
    amy = client.agent("amy")
    await amy.hello()
    await client.request_handoff()
    await amy.offer()
    await amy.expect("offer_rescinded", timeout=5)
    await client.request_handoff()
    offer = await amy.offer()
    await amy.accept(offer.offer_id)
    assert (await client.get_agent("amy")).consecutive_misses == 0


async def test_cancel_while_offered_rescinds_the_offer_and_frees_the_agent(client: Stubs) -> None:
    await client.create_agent("cat", {"general": 3})
    cat = client.agent("cat")
    await cat.hello()
    gone = await client.request_handoff()
    offer = await cat.offer()

    cancelled = await client.cancel_handoff(gone.handoff_id)
    assert cancelled.state == handoff_pb2.HANDOFF_STATE_CANCELLED
    rescinded = await cat.expect("offer_rescinded")
    assert rescinded.offer_id == offer.offer_id
    assert rescinded.reason == agent_service_pb2.RESCIND_REASON_HANDOFF_CANCELLED
    assert (await client.get_agent("cat")).load == 0
    fresh = await client.request_handoff()
    assert (await cat.offer()).details.handoff_id == fresh.handoff_id


async def test_accepting_a_rescinded_offer_is_refused_on_the_stream(client: Stubs) -> None:
    await client.create_agent("dan", {"general": 3})
    dan = client.agent("dan")
    await dan.hello()
    gone = await client.request_handoff()
    offer = await dan.offer()
    await client.cancel_handoff(gone.handoff_id)
    await dan.expect("offer_rescinded")

    command_id = dan.send(accept_offer=ConnectRequest.AcceptOffer(offer_id=offer.offer_id))
    answer = await dan.next()
    assert answer.command_id == command_id
    rejected = answer.command_rejected
    assert rejected.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert rejected.reason == "OFFER_RESCINDED"
    assert rejected.metadata["offer_id"] == offer.offer_id
    # The stream stays open and the agent is free for new work.
    fresh = await client.request_handoff()
    assert (await dan.offer()).details.handoff_id == fresh.handoff_id


async def test_accepting_an_expired_offer_is_refused(client: Stubs) -> None:
    await client.create_agent("eve", {"general": 3})
    eve = client.agent("eve")
    await eve.hello()
    await client.request_handoff()
    offer = await eve.offer()
    await eve.expect("offer_rescinded", timeout=5)

    eve.send(accept_offer=ConnectRequest.AcceptOffer(offer_id=offer.offer_id))
    rejected = (await eve.next()).command_rejected
    assert rejected.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert rejected.reason == "OFFER_EXPIRED"


async def test_an_agent_cannot_accept_or_decline_another_agents_offer(client: Stubs) -> None:
    await client.create_agent("fay", {"general": 3})
    await client.create_agent("gus", {"other": 3})
    fay, gus = client.agent("fay"), client.agent("gus")
    await fay.hello()
    await gus.hello()
    await client.request_handoff(skills={"general": 1})
    offer = await fay.offer()

    for command in (
        {"accept_offer": ConnectRequest.AcceptOffer(offer_id=offer.offer_id)},
        {"decline_offer": ConnectRequest.DeclineOffer(offer_id=offer.offer_id)},
    ):
        gus.send(**command)
        rejected = (await gus.next()).command_rejected
        assert rejected.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert rejected.reason == "OFFER_NOT_YOURS"
    # fay still holds the offer and can take it.
    await fay.accept(offer.offer_id)


async def test_unknown_and_malformed_offer_ids(client: Stubs) -> None:
    await client.create_agent("hal", {"general": 3})
    hal = client.agent("hal")
    await hal.hello()
    hal.send(
        accept_offer=ConnectRequest.AcceptOffer(offer_id="00000000-0000-4000-8000-000000000000")
    )
    rejected = (await hal.next()).command_rejected
    assert rejected.code == grpc.StatusCode.NOT_FOUND.value[0]
    hal.send(accept_offer=ConnectRequest.AcceptOffer(offer_id="not-a-uuid"))
    rejected = (await hal.next()).command_rejected
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "accept_offer.offer_id" in rejected.metadata


async def test_cancelling_an_assigned_handoff_is_refused(client: Stubs) -> None:
    await client.create_agent("ivy", {"general": 3})
    ivy = client.agent("ivy")
    await ivy.hello()
    handoff = await client.request_handoff()
    await ivy.accept((await ivy.offer()).offer_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.cancel_handoff(handoff.handoff_id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused.value)["reason"] == "HANDOFF_NOT_CANCELLABLE"
    again = await client.get_handoff(handoff.handoff_id)
    assert again.state == handoff_pb2.HANDOFF_STATE_ASSIGNED


async def test_cancelling_twice_returns_the_cancelled_handoff(client: Stubs) -> None:
    handoff = await client.request_handoff()
    first = await client.cancel_handoff(handoff.handoff_id)
    second = await client.cancel_handoff(handoff.handoff_id)
    assert first == second
    assert second.state == handoff_pb2.HANDOFF_STATE_CANCELLED


async def test_a_handoff_keeps_the_record_of_every_offer(client: Stubs) -> None:
    await client.create_agent("ann", {"billing": 4})
    await client.create_agent("bob", {"billing": 2})
    ann, bob = client.agent("ann"), client.agent("bob")
    await ann.hello()
    await bob.hello()
    handoff = await client.request_handoff(skills={"billing": 1})
    assert list(handoff.offers) == []  # the request's answer leaves them out
    first = await ann.offer()  # the more proficient
    await ann.decline(first.offer_id)
    second = await bob.offer()
    interaction = await bob.accept(second.offer_id)
    held = await client.get_handoff(handoff.handoff_id)
    assert [(o.offer_id, o.agent_id, o.state) for o in held.offers] == [
        (first.offer_id, "ann", handoff_pb2.OFFER_STATE_DECLINED),
        (second.offer_id, "bob", handoff_pb2.OFFER_STATE_ACCEPTED),
    ]
    assert held.offers[0].offer_time.ToDatetime() <= held.offers[0].decide_time.ToDatetime()
    assert held.offers[0].decide_time.ToDatetime() <= held.offers[1].offer_time.ToDatetime()
    await client.complete("bob", interaction.interaction_id)
    done = await client.get_handoff(handoff.handoff_id)
    assert [o.state for o in done.offers] == [
        handoff_pb2.OFFER_STATE_DECLINED,
        handoff_pb2.OFFER_STATE_COMPLETED,
    ]
