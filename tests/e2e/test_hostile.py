"""A hostile client against `humanline serve` with its default limits, from another process:
a flood of calls, an oversized message, bytes that are no message, a crowd of streams. The
flooder is refused (RESOURCE_EXHAUSTED with RetryInfo, INVALID_ARGUMENT), never with INTERNAL
or UNKNOWN, and the server keeps serving a well-behaved bot and stays healthy throughout."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from humanline.config import Settings
from humanline.domain.access import Principal, Role
from humanline.v1 import handoff_service_pb2
from tests.e2e.process import CHANNEL_OPTIONS, KEYS, StartServer
from tests.support.client import Stubs, error_details

pytestmark = pytest.mark.e2e

DEFAULTS = Settings()
FLOOD = 3 * DEFAULTS.rate_limit_burst  # calls fired at once, far over the burst


async def test_a_flooding_client_is_refused_and_the_others_are_served(
    start_server: StartServer,
) -> None:
    # The defaults for the limits (the e2e harness raises the rate for its crowds).
    server = await start_server(
        HUMANLINE_RATE_LIMIT_PER_SECOND=str(DEFAULTS.rate_limit_per_second),
        HUMANLINE_RATE_LIMIT_BURST=str(DEFAULTS.rate_limit_burst),
    )
    flooder = Stubs.connect(server.target, KEYS, bot_id="flooder", options=CHANNEL_OPTIONS)
    calm = Stubs.connect(server.target, KEYS, bot_id="calm-bot", options=CHANNEL_OPTIONS)
    health = grpc.aio.insecure_channel(server.target)
    codes: Counter[str] = Counter()
    retry_delays: list[float] = []

    async def flood_one() -> None:
        request = handoff_service_pb2.GetHandoffRequest(handoff_id=str(uuid.uuid4()))
        try:
            await flooder.handoffs.GetHandoff(request)
            codes["OK"] += 1
        except grpc.aio.AioRpcError as error:
            codes[error.code().name] += 1
            delay = error_details(error)["retry_delay"]
            if delay is not None:
                retry_delays.append(delay)

    async def calm_bot() -> int:
        served = 0
        for i in range(10):
            handoff = await calm.request_handoff(conversation_id=f"calm-{i}")
            assert (await calm.get_handoff(handoff.handoff_id)).handoff_id == handoff.handoff_id
            served += 1
        return served

    try:
        flood = asyncio.gather(*(flood_one() for _ in range(FLOOD)))
        served, _ = await asyncio.gather(calm_bot(), flood)
        assert served == 10
        # The burst was answered (NOT_FOUND: no such handoffs), the rest refused with a delay.
        assert codes["NOT_FOUND"] >= DEFAULTS.rate_limit_burst
        assert codes["RESOURCE_EXHAUSTED"] >= FLOOD - 2 * DEFAULTS.rate_limit_burst
        assert set(codes) <= {"NOT_FOUND", "RESOURCE_EXHAUSTED"}, codes
        assert len(retry_delays) == codes["RESOURCE_EXHAUSTED"]
        assert all(0 < d <= 1 / DEFAULTS.rate_limit_per_second + 0.001 for d in retry_delays)

        # An oversized message and bytes that are no message.
        with pytest.raises(grpc.aio.AioRpcError) as oversized:
            await calm.request_handoff(summary="x" * (DEFAULTS.max_message_bytes + 1))
        assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert calm.minter is not None
        bot = calm.minter.metadata_for(Principal(Role.BOT, "calm-bot"))
        raw = health.unary_unary("/humanline.v1.HandoffService/GetHandoff")
        with pytest.raises(grpc.aio.AioRpcError) as junk:
            await raw(b"\x0a\xff\xff\xff\xff", metadata=bot)
        assert junk.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(junk.value)["reason"] == "MALFORMED_MESSAGE"

        # Still serving the calm bot, and healthy.
        assert (await calm.request_handoff(conversation_id="after")).conversation_id == "after"
        check = await health_pb2_grpc.HealthStub(health).Check(health_pb2.HealthCheckRequest())
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await flooder.close()
        await calm.close()
        await health.close()
    # A flood is the callers' problem, not the server's: nothing in its log at error level.
    assert not [e for e in server.log_events() if e.get("level") in ("error", "critical")]
