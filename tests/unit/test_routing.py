"""Routing policies in the pure core: defaults, fallback, relaxation over the wait, validity;
and the policy file: a good one read, a bad one refused with every problem in its place."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from humanline import policyfile
from humanline.domain.model import AgentOrder, RiskClass, SkillRequirement
from humanline.domain.routing import (
    DEFAULT_POLICIES,
    FALLBACK_TYPE,
    PolicyBook,
    RelaxationStep,
    RoutingPolicy,
    next_relaxation,
    requirements_at,
)
from humanline.policyfile import PolicyFileError

S = timedelta(seconds=1)


def test_the_built_in_policies_cover_the_six_types_and_are_valid() -> None:
    book = PolicyBook()
    types = {p.interaction_type for p in DEFAULT_POLICIES}
    assert types == {
        "order_lookup",
        "standard_refund",
        "billing_dispute",
        "policy_edge_case",
        "novel_product_question",
        "fraud",
    }
    for policy in book.all():
        assert policy.problems() == [], policy.interaction_type
    fraud, lookup = book.choose("fraud").policy, book.choose("order_lookup").policy
    # Fraud: short target, high floor, high risk; order lookups: long target, any skilled agent.
    assert fraud.target < lookup.target
    assert fraud.min_proficiency >= 4 > lookup.min_proficiency
    assert (fraud.risk_class, lookup.risk_class) == (RiskClass.HIGH, RiskClass.LOW)
    dispute = book.choose("billing_dispute").policy
    assert dispute.min_proficiency >= 4
    assert dispute.target < book.choose("standard_refund").policy.target


def test_an_unknown_type_falls_back_and_says_so() -> None:
    book = PolicyBook()
    choice = book.choose("warranty_claim")
    assert choice.fallback
    assert choice.policy.interaction_type == FALLBACK_TYPE
    assert not book.choose("fraud").fallback
    book.put(RoutingPolicy("warranty_claim", target=60 * S))
    assert book.choose("warranty_claim") == book.choose("warranty_claim")
    assert not book.choose("warranty_claim").fallback
    assert book.remove("warranty_claim")
    assert not book.remove("warranty_claim")
    assert book.choose("warranty_claim").fallback
    custom = RoutingPolicy(FALLBACK_TYPE, target=45 * S)
    book.put(custom)
    assert book.choose("anything").policy == custom
    assert book.remove(FALLBACK_TYPE)
    assert book.choose("anything").policy != custom
    assert book.all()[0].interaction_type == FALLBACK_TYPE


POLICY = RoutingPolicy(
    "dispute",
    target=30 * S,
    required_skills=(SkillRequirement("billing", 3),),
    min_proficiency=4,
    max_wait=600 * S,
    relaxation=(
        RelaxationStep(60 * S, min_proficiency=3),
        RelaxationStep(120 * S, min_proficiency=2, drop_optional=True),
    ),
)


def test_requirements_widen_step_by_step_as_the_handoff_waits() -> None:
    bots = (SkillRequirement("billing", 5), SkillRequirement("spanish", 2))
    optional = ["spanish"]
    at_start = requirements_at(POLICY, bots, optional, 0 * S)
    assert at_start.step == 0
    assert at_start.skills == (SkillRequirement("billing", 5), SkillRequirement("spanish", 4))
    first = requirements_at(POLICY, bots, optional, 60 * S)
    assert first.step == 1
    assert first.skills == (SkillRequirement("billing", 3), SkillRequirement("spanish", 3))
    second = requirements_at(POLICY, bots, optional, 121 * S)
    assert second.step == 2
    assert second.skills == (SkillRequirement("billing", 2),)
    # Without the bot's skills, the policy's defaults at its floor.
    assert requirements_at(POLICY, (), (), 0 * S).skills == (SkillRequirement("billing", 4),)
    assert next_relaxation(POLICY, 0 * S) == 60 * S
    assert next_relaxation(POLICY, 60 * S) == 120 * S
    assert next_relaxation(POLICY, 500 * S) is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target": 0 * S}, "target"),
        ({"offer_timeout": -S}, "offer_timeout"),
        ({"max_wait": 10 * S}, "max_wait"),
        ({"min_proficiency": 6}, "min_proficiency"),
        ({"known_agent_wait": -S}, "known_agent_wait"),
        (
            {"relaxation": (RelaxationStep(60 * S, 3), RelaxationStep(30 * S, 2))},
            "relaxation[1].after",
        ),
        ({"relaxation": (RelaxationStep(900 * S, 3),)}, "relaxation[0].after"),
        ({"relaxation": (RelaxationStep(60 * S),)}, "relaxation[0]"),
        ({"relaxation": (RelaxationStep(60 * S, 0),)}, "relaxation[0].min_proficiency"),
    ],
)
def test_an_invalid_policy_names_its_problem(changes: dict[str, object], field: str) -> None:
    policy = replace(POLICY, **changes)  # type: ignore[arg-type]
    assert field in [f for f, _ in policy.problems()]


GOOD = """
[[policies]]
interaction_type = "fraud"
target_seconds = 20

[[policies]]
interaction_type = "warranty_claim"
target_seconds = 200
required_skills = { warranty = 2 }
risk_class = "low"
max_wait_seconds = 3600
agent_order = "least_expert"
expert_level = 4
expert_delay_seconds = 90
relaxation = [{ after_seconds = 300, min_proficiency = 1 }]

[[policies]]
interaction_type = "order_lookup"
expert_level = 0

[[policies]]
interaction_type = "default"
max_wait_seconds = 1200
"""


def test_a_policy_file_replaces_types_and_keeps_what_it_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(GOOD)
    fraud, warranty, lookup, fallback = policyfile.load(path)
    built_in = PolicyBook().choose("fraud").policy
    assert fraud.target == 20 * S
    assert (fraud.min_proficiency, fraud.required_skills) == (
        built_in.min_proficiency,
        built_in.required_skills,
    )
    assert warranty.required_skills == (SkillRequirement("warranty", 2),)
    assert warranty.risk_class is RiskClass.LOW
    assert warranty.relaxation == (RelaxationStep(300 * S, 1),)
    assert warranty.agent_order is AgentOrder.LEAST_EXPERT
    assert fraud.agent_order is AgentOrder.MOST_PROFICIENT
    assert (warranty.expert_level, warranty.expert_delay) == (4, 90 * S)
    assert (fraud.expert_level, fraud.expert_delay) == (None, 0 * S)
    # 0: none kept back, where the built-in order lookup keeps experts back for 2 minutes.
    assert (lookup.expert_level, lookup.expert_delay) == (None, 0 * S)
    assert lookup.problems() == []
    assert (fallback.interaction_type, fallback.max_wait) == (FALLBACK_TYPE, 1200 * S)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("policies = [", "not valid TOML"),
        (
            '[[policies]]\ninteraction_type = "Fraud!"',
            "policies.0.interaction_type: String should match",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\ntarget_seconds = -1',
            "policies.0.target_seconds: Input should be greater than 0",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\ncolour = "red"',
            "policies.0.colour: Extra inputs are not permitted",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\nrisk_class = "extreme"',
            "policies.0.risk_class: Input should be 'low', 'medium' or 'high'",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\nmax_wait_seconds = 10',
            "policies.0.max_wait_seconds: must not be shorter than the target",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\n'
            "relaxation = [{ after_seconds = 600, min_proficiency = 2 }]",
            "policies.0.relaxation.0.after_seconds: must come before max_wait",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\nrequired_skills = { "Bad Skill" = 2 }',
            "policies.0.required_skills.Bad Skill: not a skill name",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\nrequired_skills = { fraud = 9 }',
            "policies.0.required_skills.fraud: must be between 1 and 5",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\n[[policies]]\ninteraction_type = "fraud"',
            "policies.1.interaction_type: 'fraud' comes twice",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\nexpert_delay_seconds = 30',
            "policies.0.expert_delay_seconds: needs expert_level",
        ),
        (
            '[[policies]]\ninteraction_type = "fraud"\nexpert_level = 5',
            "policies.0.expert_delay_seconds: must be positive when expert_level is set",
        ),
    ],
)
def test_a_bad_policy_file_is_refused_with_its_problem_in_place(text: str, says: str) -> None:
    with pytest.raises(PolicyFileError) as refused:
        policyfile.parse(text, "policies.toml")
    assert str(refused.value).startswith("policies.toml: ")
    assert says in str(refused.value)


def test_a_missing_policy_file_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read it"):
        policyfile.load(tmp_path / "nope.toml")
