"""The simulated customers' ratings: after a completion, the customer's bot sends the rating
the scenario draws for that customer with RecordFeedback (retrying the same one when the
server is unavailable or over its rate), or nothing for customers who do not rate."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from humanline.sim import players
from humanline.sim.players import Customers, streams
from humanline.sim.report import Observations
from humanline.sim.scenario import Scenario, parse
from humanline.v1 import agent_service_pb2, handoff_pb2, handoff_service_pb2

SCENARIO = """
[run]
seed = 9

[[types]]
name = "billing_dispute"
per_minute = 30
skills = { billing = 1 }
handle = 5
rate = 1
rate_delay = 0

[[agents]]
name = "crew"
count = 1
skills = { billing = 2 }
"""


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")


class FakeHandoffs:
    """A HandoffService stub whose RecordFeedback fails as told, then answers."""

    def __init__(self, *failures: grpc.StatusCode) -> None:
        self.failures = list(failures)
        self.calls: list[handoff_service_pb2.RecordFeedbackRequest] = []

    async def RecordFeedback(
        self, request: handoff_service_pb2.RecordFeedbackRequest, **_: Any
    ) -> handoff_service_pb2.RecordFeedbackResponse:
        self.calls.append(request)
        if self.failures:
            raise failure(self.failures.pop(0))
        return handoff_service_pb2.RecordFeedbackResponse()


def details(customer: str = "sim-customer-7") -> agent_service_pb2.InteractionDetails:
    return agent_service_pb2.InteractionDetails(
        handoff_id="h-1",
        customer_id=customer,
        interaction_type="billing_dispute",
        urgency=handoff_pb2.URGENCY_HIGH,
    )


def customers(stub: FakeHandoffs, scenario: Scenario | None = None) -> Customers:
    return Customers(scenario or parse(SCENARIO), stub, Observations(), started=time.time())  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(players, "FEEDBACK_BACKOFF", 0.0)


async def test_a_completed_interaction_is_rated_as_the_customers_stream_draws() -> None:
    stub = FakeHandoffs()
    rating = customers(stub)
    rating.completed(details(), "crew", resolved=False, at=time.time())
    await rating.finish(time.monotonic())
    expected = parse(SCENARIO).rating(
        streams(9, "rating", "sim-customer-7"), "billing_dispute", "crew", 0, False
    )
    assert expected is not None
    (call,) = stub.calls
    assert (call.handoff_id, call.csat, call.contacted_again) == (
        "h-1",
        expected.csat,
        expected.contacted_again,
    )
    assert list(call.reason_tags) == ["unresolved"]
    (recorded,) = rating.seen.ratings
    assert (recorded.interaction_type, recorded.urgency, recorded.resolved) == (
        "billing_dispute",
        "HIGH",
        False,
    )
    assert recorded.csat == expected.csat
    assert not rating.seen.errors


async def test_the_same_feedback_is_sent_again_while_the_server_cannot_take_it() -> None:
    stub = FakeHandoffs(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    rating = customers(stub)
    rating.completed(details(), "crew", resolved=True, at=time.time())
    await rating.finish(time.monotonic())
    assert len(stub.calls) == 3
    assert stub.calls[0] == stub.calls[1] == stub.calls[2]  # never other feedback
    assert len(rating.seen.ratings) == 1
    assert rating.seen.errors == {"feedback UNAVAILABLE": 1, "feedback RESOURCE_EXHAUSTED": 1}


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION]
)
async def test_a_refusal_is_counted_not_retried(code: grpc.StatusCode) -> None:
    stub = FakeHandoffs(code)
    rating = customers(stub)
    rating.completed(details(), "crew", resolved=True, at=time.time())
    await rating.finish(time.monotonic())
    assert len(stub.calls) == 1
    assert rating.seen.ratings == []
    assert rating.seen.errors == {f"feedback {code.name}": 1}


async def test_it_gives_up_after_a_few_tries() -> None:
    stub = FakeHandoffs(*[grpc.StatusCode.UNAVAILABLE] * 10)
    rating = customers(stub)
    rating.completed(details(), "crew", resolved=True, at=time.time())
    await rating.finish(time.monotonic())
    assert len(stub.calls) == players.FEEDBACK_ATTEMPTS
    assert rating.seen.ratings == []


async def test_customers_who_do_not_rate_send_nothing() -> None:
    stub = FakeHandoffs()
    rating = customers(stub, parse(SCENARIO.replace("rate = 1", "rate = 0")))
    for n in range(20):
        rating.completed(details(f"sim-customer-{n}"), "crew", resolved=True, at=time.time())
    await rating.finish(time.monotonic())
    assert stub.calls == []


async def test_ratings_due_after_the_end_are_dropped() -> None:
    stub = FakeHandoffs()
    late = parse(SCENARIO.replace("rate_delay = 0", "rate_delay = 60"))
    rating = customers(stub, late)
    rating.completed(details(), "crew", resolved=True, at=time.time())
    async with asyncio.timeout(5):
        await rating.finish(time.monotonic() + 1)  # the rating is due a minute later
    assert stub.calls == []
