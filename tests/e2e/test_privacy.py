"""Customer free text never reaches the server's stdout or stderr (DESIGN.md 6, logs.py).

Every summary and every completion note in this test carries a distinctive marker. The handoffs
go through the paths that log: queued, offered, declined, accepted, completed (and completed
again, the same and otherwise), cancelled with a pending offer, refused as invalid, refused as a
reused request id. The server runs at the default level with JSON logs and at debug level with
console logs; after a graceful stop, no marker may appear anywhere in its output, while the log
does show the lifecycle (so the check is not passing on an empty log).
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from humanline.v1 import agent_pb2, agent_service_pb2, handoff_pb2
from tests.e2e.helpers import next_of, refused
from tests.e2e.process import SNAKE_CASE, StartServer, connect
from tests.support.client import handoff_request

pytestmark = pytest.mark.e2e

H = handoff_pb2


def marker(kind: str) -> str:
    return f"zq{kind}{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("level", "fmt"), [("info", "json"), ("debug", "console")], ids=["info-json", "debug-console"]
)
async def test_customer_free_text_never_reaches_the_server_output(
    start_server: StartServer, level: str, fmt: str
) -> None:
    server = await start_server(HUMANLINE_LOG_LEVEL=level, HUMANLINE_LOG_FORMAT=fmt)
    secrets = {
        name: marker(name)
        for name in ("summary", "cancelled", "invalid", "reused", "toolong", "notes", "other")
    }
    stubs = connect(server.target)
    try:
        await stubs.create_agent("alice", {"billing": 4})
        await stubs.create_agent("bob", {"billing": 4})
        alice, bob = stubs.agent("alice"), stubs.agent("bob")
        await alice.hello()
        await bob.hello(agent_pb2.AGENT_STATUS_AWAY)

        handoff = await stubs.request_handoff(
            skills={"billing": 3},
            summary=f"Customer says: my card ending 4242 was charged twice. {secrets['summary']}",
        )
        offer = await next_of(alice, "offer")
        assert offer.details.summary.endswith(secrets["summary"])  # the agent does see it
        rescinded = await alice.decline(offer.offer_id, agent_service_pb2.DECLINE_REASON_OTHER)
        assert rescinded.offer_rescinded.reason == agent_service_pb2.RESCIND_REASON_DECLINED

        await bob.set_status(agent_pb2.AGENT_STATUS_AVAILABLE)
        offer = await next_of(bob, "offer")
        assert offer.details.handoff_id == handoff.handoff_id
        interaction = await bob.accept(offer.offer_id)
        notes = f"Refunded; customer's address is 1 Main St. {secrets['notes']}"
        await stubs.complete("bob", interaction.interaction_id, notes=notes)
        same = await stubs.complete("bob", interaction.interaction_id, notes=notes)
        assert same.outcome == H.OUTCOME_RESOLVED
        other = await refused(
            stubs.complete("bob", interaction.interaction_id, notes=secrets["other"])
        )
        assert other.code == grpc.StatusCode.FAILED_PRECONDITION
        assert (await stubs.get_handoff(handoff.handoff_id)).summary.endswith(secrets["summary"])

        # Offered to alice, then cancelled: the pending offer is rescinded.
        cancelled = await stubs.request_handoff(skills={"billing": 3}, summary=secrets["cancelled"])
        await next_of(alice, "offer")
        await stubs.cancel_handoff(cancelled.handoff_id)
        gone = await next_of(alice, "offer_rescinded")
        assert gone.reason == agent_service_pb2.RESCIND_REASON_HANDOFF_CANCELLED

        for summary in (f"{secrets['invalid']}\x07", secrets["toolong"] + "x" * 4000):
            invalid = await refused(stubs.handoffs.RequestHandoff(handoff_request(summary=summary)))
            assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT
            assert set(invalid.violations) == {"summary"}
        reused = await refused(
            stubs.handoffs.RequestHandoff(
                handoff_request(
                    request_id=handoff.request_id, skills={"billing": 3}, summary=secrets["reused"]
                )
            )
        )
        assert reused.code == grpc.StatusCode.ALREADY_EXISTS
        alice.leave()
        bob.leave()
    finally:
        await stubs.close()
    assert await server.terminate() == 0

    output = server.stdout() + server.stderr()
    leaked = {name for name, secret in secrets.items() if secret in output}
    assert not leaked, f"customer free text in the server output: {sorted(leaked)}"
    for phrase in ("charged twice", "1 Main St", "card ending 4242"):
        assert phrase not in output

    # The log did record the lifecycle, by ids.
    assert handoff.handoff_id in server.stdout()
    assert interaction.interaction_id in server.stdout()
    if fmt == "json":
        events = server.log_events()
        assert all(SNAKE_CASE.fullmatch(e["event"]) for e in events), events
        names = {e["event"] for e in events}
        assert {
            "handoff_queued",
            "offer_sent",
            "offer_declined",
            "offer_accepted",
            "interaction_completed",
            "handoff_cancelled",
        } <= names
