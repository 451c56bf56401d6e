"""Routing policies over PoolService, on both backends: the built-in ones listed, created,
updated, read and deleted by ops; bad requests refused and changing nothing; the policy file
stored at start."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from humanline.domain.access import Principal, Role
from humanline.domain.clock import SystemClock
from humanline.domain.routing import RoutingPolicy
from humanline.domain.rules import DispatchPolicy
from humanline.policyfile import parse
from humanline.service.app import Humanline
from humanline.store import create_store
from humanline.store.port import PolicySource
from humanline.v1 import handoff_pb2, pool_service_pb2, routing_pb2
from tests.support.client import Stubs, error_details

P = pool_service_pb2
R = routing_pb2


def _seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


async def _get(client: Stubs, interaction_type: str) -> R.RoutingPolicy:
    answer = await client.pool.GetRoutingPolicy(
        P.GetRoutingPolicyRequest(interaction_type=interaction_type)
    )
    return answer.policy


async def _refused(call: object, code: grpc.StatusCode) -> dict[str, object]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == code, refused.value.details()
    return error_details(refused.value)


async def test_the_built_in_policies_are_listed_fallback_first(client: Stubs) -> None:
    listed = (await client.pool.ListRoutingPolicies(P.ListRoutingPoliciesRequest())).policies
    types = [p.interaction_type for p in listed]
    assert types[0] == "default"
    assert types[1:] == sorted(
        [
            "billing_dispute",
            "fraud",
            "novel_product_question",
            "order_lookup",
            "policy_edge_case",
            "standard_refund",
        ]
    )
    assert {p.source for p in listed} == {R.POLICY_SOURCE_BUILT_IN}
    fraud = await _get(client, "fraud")
    assert (fraud.target.seconds, fraud.min_proficiency) == (30, 4)
    assert fraud.risk_class == R.RISK_CLASS_HIGH
    assert [(s.skill, s.min_proficiency) for s in fraud.required_skills] == [("fraud", 4)]
    assert not fraud.HasField("create_time")
    details = await _refused(_get(client, "warranty_claim"), grpc.StatusCode.NOT_FOUND)
    assert details["reason"] == "POLICY_NOT_FOUND"
    details = await _refused(_get(client, "Bad Type"), grpc.StatusCode.INVALID_ARGUMENT)
    assert list(details["violations"]) == ["interaction_type"]  # type: ignore[call-overload]


async def test_ops_create_update_and_delete_policies(client: Stubs) -> None:
    created = (
        await client.pool.CreateRoutingPolicy(
            P.CreateRoutingPolicyRequest(
                policy=R.RoutingPolicy(
                    interaction_type="warranty_claim",
                    target=_seconds(200),
                    required_skills=[
                        handoff_pb2.SkillRequirement(skill="warranty", min_proficiency=2)
                    ],
                    risk_class=R.RISK_CLASS_LOW,
                    relaxation=[R.RelaxationStep(after=_seconds(400), min_proficiency=1)],
                )
            )
        )
    ).policy
    assert created.source == R.POLICY_SOURCE_API
    assert created.HasField("create_time")
    assert created.max_wait.seconds == 900  # the fallback's, left unset
    assert created.quality_ranking  # the fallback's
    assert await _get(client, "warranty_claim") == created
    again = client.pool.CreateRoutingPolicy(
        P.CreateRoutingPolicyRequest(policy=R.RoutingPolicy(interaction_type="warranty_claim"))
    )
    assert (await _refused(again, grpc.StatusCode.ALREADY_EXISTS))["reason"] == "POLICY_EXISTS"

    # An update of a built-in policy changes the named fields only, and sets it.
    faster = (
        await client.pool.UpdateRoutingPolicy(
            P.UpdateRoutingPolicyRequest(
                policy=R.RoutingPolicy(
                    interaction_type="fraud", target=_seconds(20), min_proficiency=1
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["target"]),
            )
        )
    ).policy
    assert (faster.target.seconds, faster.min_proficiency) == (20, 4)
    assert faster.source == R.POLICY_SOURCE_API
    off = (
        await client.pool.UpdateRoutingPolicy(
            P.UpdateRoutingPolicyRequest(
                policy=R.RoutingPolicy(interaction_type="fraud", quality_ranking=False)
            )
        )
    ).policy
    assert (off.quality_ranking, off.target.seconds) == (False, 20)
    assert off.agent_order == R.AGENT_ORDER_MOST_PROFICIENT
    least = (
        await client.pool.UpdateRoutingPolicy(
            P.UpdateRoutingPolicyRequest(
                policy=R.RoutingPolicy(
                    interaction_type="fraud", agent_order=R.AGENT_ORDER_LEAST_EXPERT
                )
            )
        )
    ).policy
    assert (least.agent_order, least.quality_ranking) == (R.AGENT_ORDER_LEAST_EXPERT, False)
    assert not least.expert_level  # none kept back
    assert not least.HasField("expert_delay")
    reserving = (
        await client.pool.UpdateRoutingPolicy(
            P.UpdateRoutingPolicyRequest(
                policy=R.RoutingPolicy(
                    interaction_type="fraud", expert_level=5, expert_delay=_seconds(40)
                )
            )
        )
    ).policy
    assert (reserving.expert_level, reserving.expert_delay.seconds) == (5, 40)
    assert await _get(client, "fraud") == reserving
    cleared = (
        await client.pool.UpdateRoutingPolicy(
            P.UpdateRoutingPolicyRequest(
                policy=R.RoutingPolicy(interaction_type="fraud"),
                update_mask=field_mask_pb2.FieldMask(paths=["expert_level"]),
            )
        )
    ).policy
    assert not cleared.expert_level
    assert not cleared.HasField("expert_delay")

    # Deleting what was set puts the built-in policy (or the fallback) back in force.
    back = (
        await client.pool.DeleteRoutingPolicy(
            P.DeleteRoutingPolicyRequest(interaction_type="fraud")
        )
    ).policy
    assert (back.target.seconds, back.source) == (30, R.POLICY_SOURCE_BUILT_IN)
    gone = (
        await client.pool.DeleteRoutingPolicy(
            P.DeleteRoutingPolicyRequest(interaction_type="warranty_claim")
        )
    ).policy
    assert gone.interaction_type == "default"
    missing = client.pool.DeleteRoutingPolicy(
        P.DeleteRoutingPolicyRequest(interaction_type="warranty_claim")
    )
    assert (await _refused(missing, grpc.StatusCode.NOT_FOUND))["reason"] == "POLICY_NOT_FOUND"


@pytest.mark.parametrize(
    ("policy", "paths", "field"),
    [
        (
            R.RoutingPolicy(interaction_type="fraud", target=_seconds(20)),
            ["colour"],
            "update_mask.paths[0]",
        ),
        (R.RoutingPolicy(interaction_type="fraud", max_wait=_seconds(10)), [], "policy.max_wait"),
        (R.RoutingPolicy(interaction_type="fraud", target=_seconds(-5)), [], "policy.target"),
        (
            R.RoutingPolicy(interaction_type="fraud", min_proficiency=9),
            [],
            "policy.min_proficiency",
        ),
        (R.RoutingPolicy(interaction_type="fraud", risk_class=99), [], "policy.risk_class"),
        (R.RoutingPolicy(interaction_type="fraud"), ["risk_class"], "policy.risk_class"),
        (
            R.RoutingPolicy(
                interaction_type="fraud",
                relaxation=[R.RelaxationStep(after=_seconds(20), min_proficiency=3)] * 2,
            ),
            [],
            "policy.relaxation[1].after",
        ),
        (
            R.RoutingPolicy(
                interaction_type="fraud",
                required_skills=[handoff_pb2.SkillRequirement(skill="Bad!", min_proficiency=2)],
            ),
            [],
            "policy.required_skills[0].skill",
        ),
        (R.RoutingPolicy(interaction_type="", target=_seconds(20)), [], "policy.interaction_type"),
        (R.RoutingPolicy(interaction_type="fraud", expert_level=7), [], "policy.expert_level"),
        (  # a delay with no level to keep back
            R.RoutingPolicy(interaction_type="fraud", expert_delay=_seconds(20)),
            [],
            "policy.expert_delay",
        ),
        (  # a level kept back for no time
            R.RoutingPolicy(interaction_type="fraud", expert_level=4),
            [],
            "policy.expert_delay",
        ),
    ],
)
async def test_a_bad_update_is_refused_and_changes_nothing(
    client: Stubs, policy: R.RoutingPolicy, paths: list[str], field: str
) -> None:
    before = await _get(client, "fraud")
    call = client.pool.UpdateRoutingPolicy(
        P.UpdateRoutingPolicyRequest(
            policy=policy, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
    )
    details = await _refused(call, grpc.StatusCode.INVALID_ARGUMENT)
    assert field in details["violations"]  # type: ignore[operator]
    assert await _get(client, "fraud") == before


async def test_an_unknown_type_must_be_created_not_updated(client: Stubs) -> None:
    call = client.pool.UpdateRoutingPolicy(
        P.UpdateRoutingPolicyRequest(
            policy=R.RoutingPolicy(interaction_type="new_type", target=_seconds(5))
        )
    )
    assert (await _refused(call, grpc.StatusCode.NOT_FOUND))["reason"] == "POLICY_NOT_FOUND"


async def test_bots_and_agents_may_not_touch_policies(client: Stubs) -> None:
    assert client.minter is not None
    for principal in (Principal(Role.BOT, "test-bot"), Principal(Role.AGENT, "ann")):
        metadata = client.minter.metadata_for(principal)
        calls = (
            client.pool.ListRoutingPolicies(P.ListRoutingPoliciesRequest(), metadata=metadata),
            client.pool.DeleteRoutingPolicy(
                P.DeleteRoutingPolicyRequest(interaction_type="fraud"), metadata=metadata
            ),
        )
        for call in calls:
            details = await _refused(call, grpc.StatusCode.PERMISSION_DENIED)
            assert details["reason"] == "ROLE_NOT_ALLOWED"


async def test_the_policy_file_is_stored_at_every_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'file.db'}"
    file = parse('[[policies]]\ninteraction_type = "fraud"\ntarget_seconds = 15\n', "policies.toml")
    app = Humanline(create_store(url, SystemClock()), DispatchPolicy(), routing_policies=file)
    await app.start()
    try:
        fraud = await app.policies.get("fraud")
        assert (fraud.policy.target.total_seconds(), fraud.source) == (15, PolicySource.FILE)
        await app.policies.update("fraud", {"target": fraud.policy.target * 2})
        assert (await app.policies.get("fraud")).source is PolicySource.API
    finally:
        await app.stop()
    # The next start with the file puts the file's policy back.
    app = Humanline(create_store(url, SystemClock()), DispatchPolicy(), routing_policies=file)
    await app.start()
    try:
        fraud = await app.policies.get("fraud")
        assert (fraud.policy.target.total_seconds(), fraud.source) == (15, PolicySource.FILE)
        assert isinstance(fraud.policy, RoutingPolicy)
    finally:
        await app.stop()
