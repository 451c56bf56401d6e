"""`humanline serve` with a routing policy file: its policies are in force at start, shown
over PoolService; a bad file stops the start with one line naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from humanline.v1 import pool_service_pb2, routing_pb2
from tests.e2e.process import StartServer, connect

pytestmark = pytest.mark.e2e

GOOD = """
[[policies]]
interaction_type = "fraud"
target_seconds = 20

[[policies]]
interaction_type = "warranty_claim"
target_seconds = 240
required_skills = { warranty = 2 }
"""


async def test_the_policy_file_is_in_force_at_start(
    start_server: StartServer, tmp_path: Path
) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(GOOD)
    server = await start_server(HUMANLINE_ROUTING_POLICIES=str(path))
    stubs = connect(server.target)
    try:
        listed = await stubs.pool.ListRoutingPolicies(pool_service_pb2.ListRoutingPoliciesRequest())
        by_type = {p.interaction_type: p for p in listed.policies}
        assert by_type["fraud"].target.seconds == 20
        assert by_type["fraud"].min_proficiency == 4  # the built-in value it left out
        assert by_type["fraud"].source == routing_pb2.POLICY_SOURCE_FILE
        assert by_type["warranty_claim"].required_skills[0].skill == "warranty"
        assert by_type["order_lookup"].source == routing_pb2.POLICY_SOURCE_BUILT_IN
    finally:
        await stubs.close()
    events = [e for e in server.log_events() if e["event"] == "routing_policies_loaded"]
    assert events[0]["interaction_types"] == ["fraud", "warranty_claim"]


async def test_a_bad_policy_file_stops_the_start(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_text('[[policies]]\ninteraction_type = "fraud"\nmax_wait_seconds = 5\n')
    server = await start_server(wait=False, HUMANLINE_ROUTING_POLICIES=str(path))
    assert await server.serves_or_exits() == "exited"
    assert server.exit_codes[-1] != 0
    err = server.stderr_path(server.runs).read_text()
    assert "policies.0.max_wait_seconds: must not be shorter than the target" in err, err
