"""A handoff's wait plan in the pure core: what its routing policy fixes when it is queued
(maximum wait, offer timeout, relaxation steps, the wait for a known agent), what each review
applies as time passes, and how matching honours a hold for a known agent."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from humanline.domain.matching import can_wait_for, choose_agent, choose_handoff, is_eligible
from humanline.domain.model import AgentOrder, AgentStatus, Handoff, SkillRequirement, WaitPlan
from humanline.domain.risk import RoutingDecision, decide
from humanline.domain.routing import (
    BUILT_IN_POLICIES,
    PolicyChoice,
    RelaxationStep,
    RoutingPolicy,
    expiry_reason,
    plan_relaxation,
    review,
    span,
)
from humanline.domain.rules import DEFAULT_TARGETS, DispatchPolicy, requeue_plan
from tests.unit.builders import T0, agent, at, handoff, request

S = timedelta(seconds=1)
DISPUTE = BUILT_IN_POLICIES["billing_dispute"]  # floor 4; 30 s: floor 3; 120 s: drop optional
POLICY = RoutingPolicy(
    "relaxing",
    target=30 * S,
    required_skills=(SkillRequirement("billing", 4),),
    offer_timeout=5 * S,
    max_wait=300 * S,
    relaxation=(
        RelaxationStep(60 * S, min_proficiency=3),
        RelaxationStep(90 * S, drop_optional=True),
        RelaxationStep(120 * S, min_proficiency=2),
    ),
    known_agent_wait=20 * S,
)
BILLING_AND_SPANISH = (SkillRequirement("billing", 5), SkillRequirement("spanish", 3, True))


def _decide(
    policy: RoutingPolicy = POLICY, *, online: bool = False, **fields: Any
) -> RoutingDecision:
    req = replace(request(interaction_type=policy.interaction_type), **fields)
    return decide(req, PolicyChoice(policy, False), DEFAULT_TARGETS, T0, known_agent_online=online)


def _queued(policy: RoutingPolicy = POLICY, *, online: bool = False, **fields: Any) -> Handoff:
    routed = _decide(policy, online=online, **fields)
    queued = handoff(req=routed.request, deadline=routed.deadline)
    return replace(queued, plan=routed.plan, routing=routed.explanation)


# --- the plan a policy fixes -----------------------------------------------------------------


def test_the_plan_holds_the_policys_maximum_wait_offer_timeout_and_steps() -> None:
    routed = _decide(required_skills=BILLING_AND_SPANISH)
    plan = routed.plan
    assert plan.expires_at == at(300)
    assert plan.offer_timeout == 5 * S
    assert plan.step == 0
    # At the start: the bot's skills, each at least the policy's floor... (billing 5, spanish 4)
    assert routed.request.required_skills == (
        SkillRequirement("billing", 5),
        SkillRequirement("spanish", 3, True),
    )
    # ...then each step that changes something, with what it asks for afterwards.
    assert [(step.after, step.skills, step.note) for step in plan.steps] == [
        (
            60 * S,
            (SkillRequirement("billing", 3), SkillRequirement("spanish", 3, True)),
            "billing 3+, spanish 3+",
        ),
        (90 * S, (SkillRequirement("billing", 3),), "billing 3+"),
        (120 * S, (SkillRequirement("billing", 2),), "billing 2+"),
    ]


def test_a_step_that_changes_nothing_is_left_out() -> None:
    # No optional skill to drop, and a floor already below the step's.
    steps = plan_relaxation(POLICY, (SkillRequirement("billing", 1),), ())
    assert steps == ()
    # Without the bot's skills: the policy's defaults, relaxed.
    steps = plan_relaxation(POLICY, (), ())
    assert [s.skills for s in steps] == [
        (SkillRequirement("billing", 3),),
        (SkillRequirement("billing", 2),),
    ]


def test_a_policy_without_offer_timeout_leaves_it_to_the_server() -> None:
    fallback = BUILT_IN_POLICIES["default"]
    routed = _decide(fallback)
    assert routed.plan.offer_timeout is None
    server = DispatchPolicy(offer_timeout=7 * S)
    queued = replace(handoff(), plan=routed.plan)
    assert server.offer_expiry(T0, queued) == at(7)
    own = replace(handoff(), plan=WaitPlan(offer_timeout=3 * S))
    assert server.offer_expiry(T0, own) == at(3)
    assert server.offer_expiry(T0) == at(7)


def test_a_known_agent_online_is_waited_for_and_the_routing_says_so() -> None:
    routed = _decide(online=True, preferred_agent_id="kim")
    assert routed.plan.preferred_agent_id == "kim"
    assert routed.plan.preferred_until == at(20)
    assert routed.explanation.endswith("; waits up to 20s for known agent kim")


@pytest.mark.parametrize(
    ("policy", "online", "says"),
    [
        (POLICY, False, "known agent kim not waited for: offline"),
        (
            replace(POLICY, known_agent_wait=0 * S),
            True,
            "known agent kim not waited for: the policy waits for none",
        ),
    ],
)
def test_a_known_agent_is_not_waited_for_when_offline_or_the_policy_says_so(
    policy: RoutingPolicy, online: bool, says: str
) -> None:
    routed = _decide(policy, online=online, preferred_agent_id="kim")
    assert routed.plan.preferred_until is None
    assert routed.plan.preferred_agent_id == "kim"
    assert routed.explanation.endswith(says)


# --- reviews as time passes ----------------------------------------------------------------------


def test_review_applies_each_step_when_its_time_comes() -> None:
    queued = _queued(required_skills=BILLING_AND_SPANISH)
    assert queued.review_at == at(60)
    early = review(queued, at(59))
    assert (early.skills, early.notes, early.expired) == (None, (), False)
    assert early.plan == queued.plan
    first = review(queued, at(60))
    assert first.plan.step == 1
    assert first.skills == (SkillRequirement("billing", 3), SkillRequirement("spanish", 3, True))
    assert first.notes == ("relaxed after 1m (step 1): billing 3+, spanish 3+",)
    stepped = replace(queued, plan=first.plan)
    assert stepped.review_at == at(90)
    # A late review applies every step that is due, in order.
    late = review(stepped, at(130))
    assert late.plan.step == 3
    assert late.skills == (SkillRequirement("billing", 2),)
    assert late.notes == (
        "relaxed after 1m30s (step 2): billing 3+",
        "relaxed after 2m (step 3): billing 2+",
    )
    done = replace(stepped, plan=late.plan)
    assert done.review_at == at(300)  # only the expiry is left


def test_review_ends_the_wait_for_the_known_agent() -> None:
    queued = _queued(online=True, preferred_agent_id="kim")
    assert queued.review_at == at(20)
    assert queued.reserved_for(at(19)) == "kim"
    ended = review(queued, at(20))
    assert ended.plan.preferred_until is None
    assert ended.notes == ("stopped waiting for known agent kim",)
    assert replace(queued, plan=ended.plan).reserved_for(at(20)) is None
    assert queued.reserved_for(at(20)) is None  # over at its end, reviewed or not


def test_review_expires_a_handoff_at_its_maximum_wait() -> None:
    queued = _queued()
    assert not review(queued, at(299)).expired
    assert review(queued, at(300)).expired


def test_the_expiry_reason_says_whether_anyone_could_have_taken_it() -> None:
    queued = _queued(required_skills=(SkillRequirement("fraud", 4),), language="de")
    assert expiry_reason(queued, 0, at(300)) == (
        "maximum wait over after 5m: no agent speaking de with fraud 4+ was online"
    )
    assert expiry_reason(queued, 1, at(301)) == (
        "maximum wait over after 5m1s: 1 eligible agent was online, none free"
    )
    assert expiry_reason(queued, 3, at(300)).endswith("3 eligible agents were online, none free")
    anyone = _queued(BUILT_IN_POLICIES["default"])
    assert expiry_reason(anyone, 0, at(900)).endswith(": no agent was online")


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0s"), (45, "45s"), (120, "2m"), (90, "1m30s"), (3900, "1h5m"), (0.4, "0s")],
)
def test_span_says_a_wait_as_people_do(seconds: float, said: str) -> None:
    assert span(timedelta(seconds=seconds)) == said


def test_a_requeued_handoff_gets_its_maximum_wait_again_and_no_hold() -> None:
    queued = _queued(online=True, preferred_agent_id="kim")
    plan = requeue_plan(replace(queued, plan=replace(queued.plan, step=1)), at(250))
    assert plan.expires_at == at(550)  # 300 s from the requeue
    assert plan.preferred_until is None
    assert plan.step == 1  # relaxation stays where it was
    assert requeue_plan(handoff(), at(250)) == WaitPlan()  # no plan: none made up


# --- matching with a hold ----------------------------------------------------------------------


def test_a_held_handoff_goes_only_to_its_known_agent_until_the_hold_ends() -> None:
    held = replace(
        handoff(skills={"billing": 2}),
        plan=WaitPlan(preferred_agent_id="kim", preferred_until=at(20)),
    )
    kim = agent("kim", skills={"billing": 2})
    lee = agent("lee", skills={"billing": 5})
    assert is_eligible(kim, held, now=at(10))
    assert not is_eligible(lee, held, now=at(10))
    assert choose_agent(held, [kim, lee], now=at(10)) == kim
    assert choose_agent(held, [lee], now=at(10)) is None
    assert choose_handoff(lee, [held], now=at(10)) is None
    # Once the hold is over, the best agent as always.
    assert choose_agent(held, [kim, lee], now=at(20)) == lee
    assert choose_handoff(lee, [held], now=at(20)) == held


@pytest.mark.parametrize(
    ("fields", "waited"),
    [
        ({}, True),
        ({"load": 1}, True),  # busy: soon free
        ({"status": AgentStatus.AWAY}, False),
        ({"connected": False}, False),  # reconnecting
        ({"status": AgentStatus.OFFLINE, "connected": False}, False),
    ],
)
def test_a_known_agent_is_waited_for_only_while_working(
    fields: dict[str, object], waited: bool
) -> None:
    assert can_wait_for(agent("kim", **fields)) is waited  # type: ignore[arg-type]


def test_the_built_in_policies_plan_their_steps() -> None:
    routed = _decide(DISPUTE, required_skills=BILLING_AND_SPANISH)
    # billing_dispute: floor 4 (billing 5 stays, spanish rises to 4), 30 s: floor 3,
    # 120 s: the optional Spanish goes.
    assert routed.request.required_skills == (
        SkillRequirement("billing", 5),
        SkillRequirement("spanish", 4, True),
    )
    assert [s.note for s in routed.plan.steps] == ["billing 3+, spanish 3+", "billing 3+"]
    assert routed.plan.expires_at == at(600)


def test_routine_types_go_to_the_least_expert_and_say_so() -> None:
    routed = _decide(BUILT_IN_POLICIES["order_lookup"])
    assert routed.agent_order is AgentOrder.LEAST_EXPERT
    assert routed.explanation.endswith(
        "; least expert agent first; experts (best skill 4+) only after 2m"
    )
    assert _decide(DISPUTE).agent_order is AgentOrder.MOST_PROFICIENT


# --- experts kept back ------------------------------------------------------------------------

RESERVING = replace(POLICY, expert_level=4, expert_delay=45 * S)


def test_a_policy_keeping_experts_back_plans_it_and_says_so() -> None:
    routed = _decide(RESERVING)
    assert routed.plan.expert_level == 4
    assert routed.plan.experts_from == at(45)
    assert "experts (best skill 4+) only after 45s" in routed.explanation
    plain = _decide(POLICY)
    assert plain.plan.experts_from is None
    assert "experts" not in plain.explanation


def test_experts_are_not_kept_back_when_nobody_else_could_take_it() -> None:
    routed = decide(
        replace(request(interaction_type="relaxing")),
        PolicyChoice(RESERVING, False),
        DEFAULT_TARGETS,
        T0,
        others_online=False,
    )
    assert routed.plan.experts_from is None
    assert routed.explanation.endswith(
        "; experts (best skill 4+) not kept back: no other agent online"
    )


def test_experts_take_a_reserving_handoff_only_once_it_has_waited() -> None:
    queued = _queued(RESERVING, required_skills=(SkillRequirement("billing", 2),))
    novice = agent("novice", skills={"billing": 2})
    expert = agent("expert", skills={"billing": 3, "fraud": 5})  # expert in another skill
    assert queued.review_at == at(45)  # the reserve's end is reviewed
    assert is_eligible(novice, queued, now=at(10))
    assert not is_eligible(expert, queued, now=at(10))
    assert choose_agent(queued, [expert, novice], now=at(10)) == novice
    assert choose_agent(queued, [expert], now=at(10)) is None
    assert choose_handoff(expert, [queued], now=at(10)) is None
    assert choose_agent(queued, [expert], now=at(45)) == expert
    assert choose_handoff(expert, [queued], now=at(45)) == queued
    assert is_eligible(expert, queued)  # without a moment, as ever


def test_the_known_agent_may_take_it_though_an_expert() -> None:
    queued = _queued(RESERVING, online=True, preferred_agent_id="expert")
    expert = agent("expert", skills={"billing": 5})
    other = agent("other", skills={"billing": 5})
    assert is_eligible(expert, queued, now=at(10))  # held for it: the reserve gives way
    assert not is_eligible(other, queued, now=at(10))  # held for another
    assert not is_eligible(other, queued, now=at(30))  # the hold is over, the reserve not
    assert is_eligible(other, queued, now=at(45))


def test_review_ends_the_reserve_and_says_so() -> None:
    queued = _queued(RESERVING)
    early = review(queued, at(44))
    assert early.plan.experts_from == at(45)
    assert early.notes == ()
    due = review(queued, at(46))
    assert due.plan.experts_from is None
    assert due.notes == ("experts (best skill 4+) may take it after 45s",)
    assert replace(queued, plan=due.plan).review_at == at(60)  # the first relaxation step


def test_a_requeued_handoff_is_kept_from_no_expert() -> None:
    queued = _queued(RESERVING)
    assert requeue_plan(queued, at(20)).experts_from is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"expert_level": 6, "expert_delay": S}, "expert_level"),
        ({"expert_level": 4}, "expert_delay"),  # no delay: nothing kept back
        ({"expert_level": 4, "expert_delay": 300 * S}, "expert_delay"),  # not before max wait
        ({"expert_delay": S}, "expert_delay"),  # a delay without a level
    ],
)
def test_a_bad_expert_reserve_is_a_problem(changes: dict[str, Any], problem: str) -> None:
    assert problem in [field for field, _ in replace(POLICY, **changes).problems()]
    assert RESERVING.problems() == []
