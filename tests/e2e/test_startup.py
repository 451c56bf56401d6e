"""What `humanline serve` refuses at start: unsafe settings, a database or a port in use.

A server that cannot run safely must say so and exit non-zero, leaving any server already
running untouched, rather than start half-right.
"""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from humanline.v1 import handoff_pb2
from tests.e2e.process import ServerProcess, StartServer, connect, health_status

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING


async def still_fine(server: ServerProcess) -> None:
    """The first server serves and answers as before."""
    assert await health_status(server.target) == SERVING
    stubs = connect(server.target)
    try:
        handoff = await stubs.request_handoff()
        assert handoff.state == handoff_pb2.HANDOFF_STATE_QUEUED
        assert (await stubs.get_handoff(handoff.handoff_id)).handoff_id == handoff.handoff_id
    finally:
        await stubs.close()


async def test_unsafe_settings_are_refused_at_start(start_server: StartServer) -> None:
    # A fallback sweep slower than a second would let lost wake-ups linger (config.py).
    server = await start_server(wait=False, HUMANLINE_SWEEP_INTERVAL_SECONDS="5")
    assert await server.serves_or_exits() == "exited"
    assert server.exit_codes[-1] == 2
    assert "HUMANLINE_SWEEP_INTERVAL_SECONDS" in server.stderr()
    assert "Traceback" not in server.stderr()  # one clear line, not a stack


async def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(
    server: ServerProcess, start_server: StartServer
) -> None:
    second = await start_server(
        wait=False, HUMANLINE_DATABASE_URL=server.env["HUMANLINE_DATABASE_URL"]
    )
    assert await second.serves_or_exits() == "exited", second.describe()
    assert second.exit_codes[-1] == 2
    assert "another humanline process is using" in second.stderr()
    assert "Traceback" not in second.stderr()
    await still_fine(server)


async def test_a_second_server_on_a_port_in_use_refuses_to_start(
    server: ServerProcess, start_server: StartServer
) -> None:
    # Regression: grpc enables SO_REUSEPORT by default; until the server turned it off, a
    # second `humanline serve` on a served port bound it too, and the kernel split new
    # connections between two processes with two stores.
    second = await start_server(wait=False, HUMANLINE_LISTEN=server.env["HUMANLINE_LISTEN"])
    outcome = await second.serves_or_exits()
    assert outcome == "exited", (
        f"a second server is serving on {server.target}, which the first one serves\n"
        f"{second.describe()}"
    )
    assert second.exit_codes[-1] == 2
    assert "cannot listen on" in second.stderr()
    await still_fine(server)
