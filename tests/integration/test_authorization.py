"""The authorization matrix: every RPC, called by every kind of caller, over real gRPC.

Callers: nobody (no token), a forged token (signed with a key the server does not have), an
expired token, ops, bot X (which requested the handoffs here), bot Y, agent ann (who holds
the offer and the interaction here) and agent bob. Each RPC either does its job for the
callers it is for, or answers UNAUTHENTICATED (no valid token) or PERMISSION_DENIED with an
ErrorInfo reason (the wrong role, another agent's or another bot's resource), and then
changes nothing. Health and reflection answer everybody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from humanline.domain.access import Principal, Role
from humanline.domain.rules import DispatchPolicy
from humanline.tokens import KeyRing
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    handoff_service_pb2,
    handoff_service_pb2_grpc,
    pool_service_pb2,
    pool_service_pb2_grpc,
    quality_pb2,
    routing_pb2,
)
from tests.conftest import Served, serve
from tests.support.client import ConnectRequest, Stubs, error_details, handoff_request

OK = "OK"
Metadata = tuple[tuple[str, str], ...]


@dataclass
class Scene:
    """What the calls act on: ann's offer (for the stream) and interaction, bot X's
    handoffs."""

    served: Served
    admin: Stubs
    raw: grpc.aio.Channel
    handoff_id: str  # bot X's, assigned to ann
    interaction_id: str  # ann's
    callers: dict[str, Metadata]


def _bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def _scene(served: Served) -> Scene:
    assert served.keys is not None
    admin = served.stubs()  # its handoff calls are bot "test-bot"'s: that is bot X here
    await admin.create_agent("ann", {"billing": 3})
    await admin.create_agent("bob", {"billing": 3})
    ann = admin.agent("ann")
    await ann.hello()
    handoff = await admin.request_handoff(skills={"billing": 1})
    interaction = await ann.accept((await ann.offer()).offer_id)
    keys, foreign = served.keys, KeyRing.generate()
    long_ago = datetime.now(UTC) - timedelta(days=1)
    callers = {
        "nobody": (),
        "forged": _bearer(foreign.issue(Principal(Role.OPS, "ops"))),
        "expired": _bearer(keys.issue(Principal(Role.OPS, "ops"), timedelta(hours=1), long_ago)),
        "ops": _bearer(keys.issue(Principal(Role.OPS, "ops"))),
        "bot-x": _bearer(keys.issue(Principal(Role.BOT, "test-bot"))),
        "bot-y": _bearer(keys.issue(Principal(Role.BOT, "other-bot"))),
        "ann": _bearer(keys.issue(Principal(Role.AGENT, "ann"))),
        "bob": _bearer(keys.issue(Principal(Role.AGENT, "bob"))),
    }
    raw = grpc.aio.insecure_channel(served.target)
    return Scene(served, admin, raw, handoff.handoff_id, interaction.interaction_id, callers)


Call = Callable[[Scene, Metadata], Awaitable[Any]]


async def _create_agent(scene: Scene, md: Metadata) -> Any:
    stub = pool_service_pb2_grpc.PoolServiceStub(scene.raw)
    agent = agent_pb2.Agent(skills=[agent_pb2.AgentSkill(skill="chat", proficiency=2)])
    return await stub.CreateAgent(
        pool_service_pb2.CreateAgentRequest(agent_id="new-agent", agent=agent), metadata=md
    )


async def _pool(scene: Scene, md: Metadata, name: str, request: Any) -> Any:
    return await getattr(pool_service_pb2_grpc.PoolServiceStub(scene.raw), name)(
        request, metadata=md
    )


async def _delete_policy(scene: Scene, md: Metadata) -> Any:
    """Deletes the policy set for `matrix_type`, which ops set first if it is not set."""
    listed = await scene.admin.pool.ListRoutingPolicies(
        pool_service_pb2.ListRoutingPoliciesRequest()
    )
    if "matrix_type" not in {p.interaction_type for p in listed.policies}:
        await scene.admin.pool.CreateRoutingPolicy(
            pool_service_pb2.CreateRoutingPolicyRequest(
                policy=routing_pb2.RoutingPolicy(interaction_type="matrix_type")
            )
        )
    request = pool_service_pb2.DeleteRoutingPolicyRequest(interaction_type="matrix_type")
    return await _pool(scene, md, "DeleteRoutingPolicy", request)


async def _handoffs(scene: Scene, md: Metadata, name: str, request: Any) -> Any:
    return await getattr(handoff_service_pb2_grpc.HandoffServiceStub(scene.raw), name)(
        request, metadata=md
    )


async def _watch(scene: Scene, md: Metadata) -> Any:
    stub = handoff_service_pb2_grpc.HandoffServiceStub(scene.raw)
    call = stub.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=scene.handoff_id), metadata=md
    )
    first = await call.read()
    call.cancel()
    return first


async def _watch_alerts(scene: Scene, md: Metadata) -> Any:
    """Opens the alert stream: refused at once, or open with nothing to say yet."""
    stub = pool_service_pb2_grpc.PoolServiceStub(scene.raw)
    call = stub.WatchQualityAlerts(pool_service_pb2.WatchQualityAlertsRequest(), metadata=md)
    try:
        async with asyncio.timeout(0.3):
            return await call.read()
    except TimeoutError:
        return None
    finally:
        call.cancel()


async def _watch_pool(scene: Scene, md: Metadata) -> Any:
    """Opens the pool status stream: refused, or its first message (the status now)."""
    stub = pool_service_pb2_grpc.PoolServiceStub(scene.raw)
    call = stub.WatchPoolStatus(pool_service_pb2.WatchPoolStatusRequest(), metadata=md)
    try:
        return await call.read()
    finally:
        call.cancel()


async def _export(scene: Scene, md: Metadata) -> Any:
    stub = pool_service_pb2_grpc.PoolServiceStub(scene.raw)
    call = stub.ExportOutcomes(pool_service_pb2.ExportOutcomesRequest(), metadata=md)
    return [message async for message in call]


async def _cancel(scene: Scene, md: Metadata) -> Any:
    """Cancels a fresh queued handoff of bot X (nobody can take it: no agent has the skill)."""
    queued = await scene.admin.request_handoff(skills={"nobody-has-this": 1})
    request = handoff_service_pb2.CancelHandoffRequest(handoff_id=queued.handoff_id)
    return await _handoffs(scene, md, "CancelHandoff", request)


async def _complete(scene: Scene, md: Metadata, agent_id: str = "ann") -> Any:
    stub = agent_service_pb2_grpc.AgentServiceStub(scene.raw)
    request = agent_service_pb2.CompleteInteractionRequest(
        agent_id=agent_id,
        interaction_id=scene.interaction_id,
        outcome=1,
        disposition_code="done",
    )
    return await stub.CompleteInteraction(request, metadata=md)


async def _connect(scene: Scene, md: Metadata, agent_id: str = "bob") -> Any:
    """Opens a session for bob: the first answer is the welcome, or the call fails."""
    stub = agent_service_pb2_grpc.AgentServiceStub(scene.raw)
    hello = ConnectRequest(hello=ConnectRequest.Hello(agent_id=agent_id))

    async def requests() -> Any:
        yield hello

    call = stub.Connect(requests(), metadata=md)
    try:
        return await call.read()
    finally:
        call.cancel()


def _expect(**allowed: str) -> dict[str, str]:
    """Outcomes by caller: the three without a valid token are always UNAUTHENTICATED; the
    others PERMISSION_DENIED (reason ROLE_NOT_ALLOWED) unless named."""
    base = dict.fromkeys(("ops", "bot-x", "bot-y", "ann", "bob"), "ROLE_NOT_ALLOWED")
    base.update({"nobody": "TOKEN_MISSING", "forged": "TOKEN_KEY_UNKNOWN"})
    base["expired"] = "TOKEN_EXPIRED"
    return {**base, **{k.replace("_", "-"): v for k, v in allowed.items()}}


OPS_ONLY = _expect(ops=OK)
HANDOFF = _expect(ops=OK, bot_x=OK, bot_y="HANDOFF_NOT_YOURS")

MATRIX: dict[str, tuple[Call, dict[str, str]]] = {
    "PoolService.CreateAgent": (_create_agent, OPS_ONLY),
    "PoolService.UpdateAgent": (
        lambda s, md: _pool(
            s,
            md,
            "UpdateAgent",
            pool_service_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(agent_id="bob", display_name="Bob"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
        ),
        OPS_ONLY,
    ),
    "PoolService.GetAgent": (
        lambda s, md: _pool(s, md, "GetAgent", pool_service_pb2.GetAgentRequest(agent_id="ann")),
        OPS_ONLY,
    ),
    "PoolService.ListAgents": (
        lambda s, md: _pool(s, md, "ListAgents", pool_service_pb2.ListAgentsRequest()),
        OPS_ONLY,
    ),
    "PoolService.DeleteAgent": (
        # bob is offline with no work: deleting him succeeds for ops
        lambda s, md: _pool(
            s, md, "DeleteAgent", pool_service_pb2.DeleteAgentRequest(agent_id="bob")
        ),
        OPS_ONLY,
    ),
    "PoolService.GetPoolStatus": (
        lambda s, md: _pool(s, md, "GetPoolStatus", pool_service_pb2.GetPoolStatusRequest()),
        OPS_ONLY,
    ),
    "PoolService.CreateRoutingPolicy": (
        lambda s, md: _pool(
            s,
            md,
            "CreateRoutingPolicy",
            pool_service_pb2.CreateRoutingPolicyRequest(
                policy=routing_pb2.RoutingPolicy(interaction_type="matrix_type")
            ),
        ),
        OPS_ONLY,
    ),
    "PoolService.UpdateRoutingPolicy": (
        lambda s, md: _pool(
            s,
            md,
            "UpdateRoutingPolicy",
            pool_service_pb2.UpdateRoutingPolicyRequest(
                policy=routing_pb2.RoutingPolicy(interaction_type="fraud", min_proficiency=5)
            ),
        ),
        OPS_ONLY,
    ),
    "PoolService.GetRoutingPolicy": (
        lambda s, md: _pool(
            s,
            md,
            "GetRoutingPolicy",
            pool_service_pb2.GetRoutingPolicyRequest(interaction_type="fraud"),
        ),
        OPS_ONLY,
    ),
    "PoolService.ListRoutingPolicies": (
        lambda s, md: _pool(
            s, md, "ListRoutingPolicies", pool_service_pb2.ListRoutingPoliciesRequest()
        ),
        OPS_ONLY,
    ),
    "PoolService.DeleteRoutingPolicy": (_delete_policy, OPS_ONLY),
    "PoolService.WatchQualityAlerts": (_watch_alerts, OPS_ONLY),
    "PoolService.WatchPoolStatus": (_watch_pool, OPS_ONLY),
    "PoolService.ExportOutcomes": (_export, OPS_ONLY),
    "PoolService.GetQualityReport": (
        lambda s, md: _pool(
            s,
            md,
            "GetQualityReport",
            pool_service_pb2.GetQualityReportRequest(
                group_by=quality_pb2.QUALITY_DIMENSION_INTERACTION_TYPE
            ),
        ),
        OPS_ONLY,
    ),
    "HandoffService.RequestHandoff": (
        lambda s, md: _handoffs(s, md, "RequestHandoff", handoff_request()),
        _expect(bot_x=OK, bot_y=OK),
    ),
    "HandoffService.GetHandoff": (
        lambda s, md: _handoffs(
            s, md, "GetHandoff", handoff_service_pb2.GetHandoffRequest(handoff_id=s.handoff_id)
        ),
        HANDOFF,
    ),
    "HandoffService.WatchHandoff": (_watch, HANDOFF),
    "HandoffService.CancelHandoff": (_cancel, HANDOFF),
    # Bot X's handoff is with ann, not completed: those allowed learn that it is too early.
    "HandoffService.RecordFeedback": (
        lambda s, md: _handoffs(
            s,
            md,
            "RecordFeedback",
            handoff_service_pb2.RecordFeedbackRequest(handoff_id=s.handoff_id, csat=4),
        ),
        {
            **HANDOFF,
            "ops": "FAILED_PRECONDITION HANDOFF_NOT_COMPLETED",
            "bot-x": "FAILED_PRECONDITION HANDOFF_NOT_COMPLETED",
        },
    ),
    "AgentService.CompleteInteraction": (_complete, _expect(ann=OK, bob="AGENT_MISMATCH")),
    "AgentService.Connect": (_connect, _expect(bob=OK, ann="AGENT_MISMATCH")),
}


async def _outcome(call: Call, scene: Scene, md: Metadata) -> str:
    """OK, or the reason of a refusal with the status code it must come with."""
    try:
        await call(scene, md)
    except grpc.aio.AioRpcError as error:
        failed = error
    else:
        return OK
    reason = str(error_details(failed)["reason"])
    code = "UNAUTHENTICATED" if reason.startswith("TOKEN_") else "PERMISSION_DENIED"
    return reason if failed.code().name == code else f"{failed.code().name} {reason}"


@pytest.mark.parametrize("rpc", sorted(MATRIX))
async def test_every_rpc_answers_every_caller_as_it_should(served: Served, rpc: str) -> None:
    scene = await _scene(served)
    call, expected = MATRIX[rpc]
    try:
        got = {}
        # Refusals first: a refused call must leave what the allowed one acts on unchanged.
        for name in sorted(scene.callers, key=lambda n: expected[n] == OK):
            got[name] = await _outcome(call, scene, scene.callers[name])
        assert got == expected
    finally:
        await scene.raw.close()
        await scene.admin.close()


async def test_refused_calls_change_nothing(served: Served) -> None:
    scene = await _scene(served)
    try:
        before = await scene.admin.get_handoff(scene.handoff_id)
        agents = await _pool(
            scene, scene.callers["ops"], "ListAgents", pool_service_pb2.ListAgentsRequest()
        )
        for name in ("nobody", "forged", "expired", "bot-y", "bob"):
            md = scene.callers[name]
            for call in (_cancel, _complete, _create_agent):
                await _outcome(call, scene, md)
        after = await scene.admin.get_handoff(scene.handoff_id)
        assert after == before  # still assigned to ann, not completed
        again = await _pool(
            scene, scene.callers["ops"], "ListAgents", pool_service_pb2.ListAgentsRequest()
        )
        assert again == agents  # no agent created
    finally:
        await scene.raw.close()
        await scene.admin.close()


async def test_an_agent_cannot_take_or_decline_another_agents_offer_on_its_own_stream(
    served: Served,
) -> None:
    admin = served.stubs()
    try:
        await admin.create_agent("ann", {"billing": 3})
        await admin.create_agent("bob", {"billing": 1})
        ann, bob = admin.agent("ann"), admin.agent("bob")
        await ann.hello()
        await bob.hello()
        await admin.request_handoff(skills={"billing": 1})
        offer = await ann.offer()  # the more proficient
        answer = await bob.answer(
            bob.send(accept_offer=ConnectRequest.AcceptOffer(offer_id=offer.offer_id))
        )
        assert answer.command_rejected.reason == "OFFER_NOT_YOURS"
        assert answer.command_rejected.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        declined = await bob.answer(
            bob.send(decline_offer=ConnectRequest.DeclineOffer(offer_id=offer.offer_id))
        )
        assert declined.command_rejected.reason == "OFFER_NOT_YOURS"
        assert declined.command_rejected.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        # Neither took the offer from ann.
        assert (await ann.accept(offer.offer_id)).interaction_id == offer.offer_id
    finally:
        await admin.close()


async def _services(target: str) -> list[str]:
    """The services reflection lists, asked without a token."""
    async with grpc.aio.insecure_channel(target) as ch:
        call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        answers = [answer async for answer in call]
    return [s.name for s in answers[0].list_services_response.service]


async def test_health_and_reflection_answer_without_a_token(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.target) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "humanline.v1.HandoffService" in await _services(served.target)


async def test_reflection_can_be_switched_off(tmp_path: Path, policy: DispatchPolicy) -> None:
    served = await serve(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", policy, reflect=False)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as off:
            await _services(served.target)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
        async with grpc.aio.insecure_channel(served.target) as ch:  # health stays
            health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await served.stop()
