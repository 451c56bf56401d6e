"""CancelHandoff racing an offer on PostgreSQL: a cancelled handoff keeps no live offer.

Found by the multi-replica runs (tests/e2e/test_replicas.py, which cancel 3% of the handoffs
shortly after requesting them): offers left PENDING for CANCELLED handoffs, agents whose load
never came back to zero, and resumes answered UNKNOWN.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from humanline.v1 import agent_pb2, agent_service_pb2, handoff_pb2
from tests.e2e.conftest import PostgresDatabase
from tests.e2e.helpers import next_of
from tests.e2e.process import StartServer, connect

pytestmark = pytest.mark.e2e

# Test-only fault injection: the cancel's UPDATE (the only UPDATE of handoffs that sets
# ended_at without an outcome) waits 3 s before it looks at the row, as a slow round trip
# between the cancel's read and its write does under load.
SLOW_CANCEL = """
CREATE FUNCTION e2e_slow_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_query() LIKE '%ended_at=%' AND current_query() NOT LIKE '%outcome=%' THEN
        PERFORM pg_sleep(3);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER e2e_slow_cancel BEFORE UPDATE ON handoffs
    FOR EACH STATEMENT EXECUTE FUNCTION e2e_slow_cancel();
"""


# `Handoffs.cancel` reads the handoff, rescinds the pending offer it saw, then cancels only a
# handoff still as it read it (QUEUED, or OFFERED by that offer) and otherwise starts again.
# When it cancelled any waiting handoff instead, an offer committed between the read and the
# write (read QUEUED, written OFFERED) stayed PENDING on a CANCELLED handoff: the agent's slot
# stayed taken for good, the offer could never expire, and every later withdrawal of the
# agent's offers (away, log-out, a dropped stream, a resume elsewhere) failed. A trigger delays
# the cancel's UPDATE by 3 s (the race window) while the agent becomes available.
async def test_a_cancel_racing_an_offer_rescinds_it(
    own_postgres: PostgresDatabase, start_server: StartServer
) -> None:
    server = await start_server(
        HUMANLINE_DATABASE_URL=own_postgres.url, HUMANLINE_OFFER_TIMEOUT_SECONDS="6"
    )
    stubs = connect(server.target)
    conn = await asyncpg.connect(own_postgres.dsn)
    alice = stubs.agent("alice")
    try:
        await stubs.create_agent("alice", {"billing": 3})
        await alice.hello(agent_pb2.AGENT_STATUS_AWAY)  # not available yet: the handoff waits
        handoff = await stubs.request_handoff(skills={"billing": 2})
        assert handoff.state == handoff_pb2.HANDOFF_STATE_QUEUED
        await conn.execute(SLOW_CANCEL)

        # The cancel reads the handoff QUEUED, then (slowly) cancels it; meanwhile alice
        # becomes available and is offered the handoff.
        cancel = asyncio.create_task(stubs.cancel_handoff(handoff.handoff_id))
        await asyncio.sleep(0.5)
        await alice.set_status(agent_pb2.AGENT_STATUS_AVAILABLE)
        offer = await next_of(alice, "offer")
        assert offer.details.handoff_id == handoff.handoff_id
        cancelled = await cancel
        assert cancelled.state == handoff_pb2.HANDOFF_STATE_CANCELLED

        # The cancel took the handoff from under the offer: the offer must be rescinded and
        # alice's slot freed, as when a cancel finds the handoff OFFERED. Looked at once the
        # offer's expiry (6 s) is well past, so that not even the expiry can be missing.
        await asyncio.sleep(max(0.0, offer.expire_time.ToSeconds() - time.time()) + 2)
        left = await conn.fetchval(
            "SELECT count(*) FROM offers WHERE handoff_id = $1 AND state = 'PENDING'",
            handoff.handoff_id,
        )
        load = await conn.fetchval("SELECT load FROM agents WHERE id = 'alice'")
        told = [
            m.offer_rescinded.reason
            for m in await alice.quiet(1.0)
            if m.HasField("offer_rescinded")
        ]
        assert (left, load, told) == (0, 0, [agent_service_pb2.RESCIND_REASON_HANDOFF_CANCELLED]), (
            f"the handoff is CANCELLED, yet {left} offer(s) for it are still PENDING (past "
            f"their expiry), alice's load is {load}, and her stream was told {told}"
        )
    finally:
        alice.drop()
        await conn.close()
        await stubs.close()
