"""Proto <-> domain conversion at the gRPC edge (humanline.grpc.converters): validation and
defaults of incoming messages (with their field paths), enum mapping in both directions for
every domain enum on the wire, and the outgoing messages built from domain objects."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from humanline.domain import model
from humanline.domain.clock import FakeClock
from humanline.domain.errors import FieldViolation, InvalidArgument, NotFound, Violations
from humanline.grpc import converters as c
from humanline.service.agents import Connection
from humanline.service.events import (
    AgentChannel,
    AssignmentMade,
    CommandFailed,
    HeartbeatAck,
    OfferMade,
    OfferWithdrawn,
    StatusUpdated,
    StreamClosing,
)
from humanline.service.handoffs import HandoffView
from humanline.service.pool import PoolStatus
from humanline.store.port import Capacity, PoolSnapshot
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
)
from tests.unit.builders import (
    HANDOFF_ID,
    OFFER_ID,
    REQUEST_ID,
    T0,
    agent,
    at,
    completed_interaction,
    handoff,
    offer,
    request,
)

INTERACTION_ID = OFFER_ID


def raises_with(fn: Any, *args: Any, **kwargs: Any) -> list[FieldViolation]:
    """The violations of the InvalidArgument `fn` raises."""
    with pytest.raises(InvalidArgument) as info:
        fn(*args, **kwargs)
    return info.value.violations


def fields(violations: list[FieldViolation]) -> list[str]:
    return [v.field for v in violations]


def utc(ts: Any) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


# --- enums --------------------------------------------------------------------------------------

# (domain enum, proto enum, prefix, domain members with no proto value)
ENUMS: list[tuple[type[enum.Enum], EnumTypeWrapper, str, set[enum.Enum]]] = [
    (model.Urgency, handoff_pb2.Urgency, "URGENCY_", set()),
    (model.HandoffState, handoff_pb2.HandoffState, "HANDOFF_STATE_", set()),
    (model.HandoffReason, handoff_pb2.HandoffReason, "HANDOFF_REASON_", set()),
    (model.Outcome, handoff_pb2.Outcome, "OUTCOME_", set()),
    (model.AgentState, agent_pb2.AgentState, "AGENT_STATE_", set()),
    # OFFLINE is stored, never sent: an agent can only ask for AVAILABLE or AWAY.
    (model.AgentStatus, agent_pb2.AgentStatus, "AGENT_STATUS_", {model.AgentStatus.OFFLINE}),
    (model.DeclineReason, agent_service_pb2.DeclineReason, "DECLINE_REASON_", set()),
    (model.RescindReason, agent_service_pb2.RescindReason, "RESCIND_REASON_", set()),
    (
        model.StatusChangeReason,
        agent_service_pb2.StatusChangeReason,
        "STATUS_CHANGE_REASON_",
        set(),
    ),
]


@pytest.mark.parametrize(("cls", "wrapper", "prefix", "absent"), ENUMS, ids=lambda x: str(x))
def test_enum_round_trip_for_every_member(
    cls: type[enum.Enum], wrapper: EnumTypeWrapper, prefix: str, absent: set[enum.Enum]
) -> None:
    for member in cls:
        if member in absent:
            with pytest.raises(ValueError, match=member.name):
                c.enum_to_proto(wrapper, prefix, member)
            continue
        number = c.enum_to_proto(wrapper, prefix, member)
        assert wrapper.Name(number) == prefix + member.name
        v = Violations()
        back = c.enum_from_proto(v, "f", wrapper, prefix, number, cls)
        v.raise_if_any()
        # 0 is "unspecified" on the wire: it comes back as None for the caller to default.
        assert back is (None if number == 0 else member)


@pytest.mark.parametrize(("cls", "wrapper", "prefix", "absent"), ENUMS, ids=lambda x: str(x))
def test_every_proto_value_has_a_domain_member(
    cls: type[enum.Enum], wrapper: EnumTypeWrapper, prefix: str, absent: set[enum.Enum]
) -> None:
    for number in wrapper.values():
        v = Violations()
        member = c.enum_from_proto(v, "f", wrapper, prefix, number, cls)
        v.raise_if_any()
        if number == 0:
            assert member is None
        else:
            assert member is not None
            assert c.enum_to_proto(wrapper, prefix, member) == number


def test_enum_from_proto_unknown_number_is_a_violation() -> None:
    v = Violations()
    assert (
        c.enum_from_proto(v, "urgency", handoff_pb2.Urgency, "URGENCY_", 99, model.Urgency) is None
    )
    assert raises_with(v.raise_if_any) == [FieldViolation("urgency", "unknown value 99")]


# --- handoff_request ----------------------------------------------------------------------------


def handoff_msg(**overrides: Any) -> handoff_service_pb2.RequestHandoffRequest:
    fields_: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "conversation_id": "conv-1",
        "customer_id": "cust-1",
        "interaction_type": "billing_dispute",
        "required_skills": [handoff_pb2.SkillRequirement(skill="billing", min_proficiency=3)],
        "language": "en",
        "urgency": handoff_pb2.URGENCY_HIGH,
        "summary": "customer disputes a charge",
        "reason": handoff_pb2.HANDOFF_REASON_LOW_CONFIDENCE,
    }
    fields_.update(overrides)
    return handoff_service_pb2.RequestHandoffRequest(**fields_)


def test_handoff_request_converts_every_field() -> None:
    assert c.handoff_request(handoff_msg()) == model.HandoffRequest(
        request_id=REQUEST_ID,
        conversation_id="conv-1",
        customer_id="cust-1",
        interaction_type="billing_dispute",
        required_skills=(model.SkillRequirement("billing", 3),),
        language="en",
        urgency=model.Urgency.HIGH,
        summary="customer disputes a charge",
        reason=model.HandoffReason.LOW_CONFIDENCE,
    )


def test_handoff_request_defaults() -> None:
    req = c.handoff_request(
        handoff_msg(urgency=0, reason=0, language="", required_skills=[], summary="")
    )
    assert req.urgency is model.Urgency.NORMAL
    assert req.reason is model.HandoffReason.UNSPECIFIED
    assert req.language is None
    assert req.required_skills == ()
    assert req.summary == ""


@pytest.mark.parametrize("urgency", list(model.Urgency))
def test_handoff_request_urgencies(urgency: model.Urgency) -> None:
    number = handoff_pb2.Urgency.Value(f"URGENCY_{urgency.name}")
    assert c.handoff_request(handoff_msg(urgency=number)).urgency is urgency


def test_handoff_request_unknown_enums_are_violations() -> None:
    assert raises_with(c.handoff_request, handoff_msg(urgency=99, reason=42)) == [
        FieldViolation("urgency", "unknown value 99"),
        FieldViolation("reason", "unknown value 42"),
    ]


def test_handoff_request_min_proficiency_zero_means_one() -> None:
    msg = handoff_msg(
        required_skills=[
            handoff_pb2.SkillRequirement(skill="billing"),
            handoff_pb2.SkillRequirement(skill="fraud", min_proficiency=4),
        ]
    )
    assert c.handoff_request(msg).required_skills == (
        model.SkillRequirement("billing", 1),
        model.SkillRequirement("fraud", 4),
    )


def test_handoff_request_keeps_required_skills_order() -> None:
    msg = handoff_msg(
        required_skills=[
            handoff_pb2.SkillRequirement(skill="tech", min_proficiency=2),
            handoff_pb2.SkillRequirement(skill="billing", min_proficiency=5),
        ]
    )
    assert [r.skill for r in c.handoff_request(msg).required_skills] == ["tech", "billing"]


@pytest.mark.parametrize(("sent", "kept"), [("EN", "en"), (" Pt-BR ", "pt-br"), ("  ", None)])
def test_handoff_request_language_is_normalized(sent: str, kept: str | None) -> None:
    assert c.handoff_request(handoff_msg(language=sent)).language == kept


@pytest.mark.parametrize(
    "sent",
    [
        REQUEST_ID.upper(),
        "{" + REQUEST_ID + "}",
        "urn:uuid:" + REQUEST_ID,
        REQUEST_ID.replace("-", ""),
    ],
)
def test_handoff_request_request_id_is_normalized(sent: str) -> None:
    assert c.handoff_request(handoff_msg(request_id=sent)).request_id == REQUEST_ID


def test_handoff_request_reports_every_violation_at_once() -> None:
    msg = handoff_msg(
        request_id="not-a-uuid",
        conversation_id="",
        customer_id="x" * 129,
        interaction_type="Billing",
        required_skills=[
            handoff_pb2.SkillRequirement(skill="billing", min_proficiency=3),
            handoff_pb2.SkillRequirement(skill="fraud", min_proficiency=6),
            handoff_pb2.SkillRequirement(skill="billing", min_proficiency=-1),
        ],
        language="english",
        urgency=7,
        summary="bell\x07",
        reason=99,
    )
    assert fields(raises_with(c.handoff_request, msg)) == [
        "urgency",
        "reason",
        "request_id",
        "conversation_id",
        "customer_id",
        "interaction_type",
        "required_skills[1].min_proficiency",
        "required_skills[2].min_proficiency",
        "required_skills[2].skill",
        "language",
        "summary",
    ]


def test_uuid_ids_are_validated_and_normalized() -> None:
    assert c.uuid_id("handoff_id", HANDOFF_ID.upper()) == HANDOFF_ID
    assert raises_with(c.uuid_id, "handoff_id", "h1") == [
        FieldViolation("handoff_id", "must be a UUID")
    ]
    assert raises_with(c.uuid_id, "accept_offer.offer_id", "") == [
        FieldViolation("accept_offer.offer_id", "required")
    ]


def test_agent_id_is_validated() -> None:
    assert c.agent_id("hello.agent_id", "ada-1") == "ada-1"
    assert fields(raises_with(c.agent_id, "hello.agent_id", "Ada")) == ["hello.agent_id"]


def test_command_id_is_cut_to_64_characters() -> None:
    assert c.command_id("abc") == "abc"
    assert c.command_id("x" * 200) == "x" * 64


# --- create_agent -------------------------------------------------------------------------------


def skill(name: str, proficiency: int) -> agent_pb2.AgentSkill:
    return agent_pb2.AgentSkill(skill=name, proficiency=proficiency)


def create_msg(requested_id: str = "", **agent_fields: Any) -> pool_service_pb2.CreateAgentRequest:
    return pool_service_pb2.CreateAgentRequest(
        agent_id=requested_id, agent=agent_pb2.Agent(**agent_fields)
    )


def test_create_agent_converts() -> None:
    msg = create_msg(
        "ada",
        display_name="Ada",
        skills=[skill("billing", 4), skill("fraud", 2)],
        languages=["EN", "de-CH"],
        capacity=3,
    )
    assert c.create_agent(msg) == (
        "ada",
        model.AgentProfile(
            display_name="Ada",
            skills={"billing": 4, "fraud": 2},
            languages=frozenset({"en", "de-ch"}),
            capacity=3,
        ),
    )


def test_create_agent_without_id_lets_the_server_choose() -> None:
    agent_id, _ = c.create_agent(create_msg(display_name="Ada"))
    assert agent_id is None


def test_create_agent_capacity_zero_means_one() -> None:
    _, profile = c.create_agent(create_msg(display_name="Ada"))
    assert profile.capacity == 1


def test_create_agent_ignores_output_only_fields() -> None:
    msg = create_msg(
        "ada",
        agent_id="someone-else",
        display_name="Ada",
        capacity=2,
        state=agent_pb2.AGENT_STATE_BUSY,
        load=9,
        consecutive_misses=4,
    )
    msg.agent.create_time.GetCurrentTime()
    assert c.create_agent(msg) == ("ada", model.AgentProfile("Ada", {}, frozenset(), 2))


def test_create_agent_requires_the_agent() -> None:
    msg = pool_service_pb2.CreateAgentRequest(agent_id="ada")
    assert raises_with(c.create_agent, msg) == [FieldViolation("agent", "required")]


def test_create_agent_duplicate_skill() -> None:
    msg = create_msg(skills=[skill("billing", 4), skill("billing", 2)], capacity=1)
    assert raises_with(c.create_agent, msg) == [
        FieldViolation("agent.skills[1].skill", "skill 'billing' is listed twice")
    ]


def test_create_agent_reports_every_violation_at_once() -> None:
    msg = create_msg(
        "Not An Id",
        display_name="x" * 101,
        skills=[skill("billing", 0)],
        languages=["english"],
        capacity=21,
    )
    assert fields(raises_with(c.create_agent, msg)) == [
        "agent_id",
        "agent.display_name",
        "agent.skills[0].proficiency",
        "agent.languages[0]",
        "agent.capacity",
    ]


def test_create_agent_reports_a_bad_language_once_at_its_index() -> None:
    # Regression: languages were validated both after normalizing into a set (indexes in
    # hash order) and as sent, so one bad tag was reported twice, once at a valid element.
    msg = create_msg(display_name="Ada", languages=["en", "fr", "1"], capacity=1)
    assert raises_with(c.create_agent, msg) == [
        FieldViolation(
            "agent.languages[2]", 'must be a BCP 47 language tag such as "en" or "pt-br"'
        )
    ]


def test_create_agent_names_a_bad_skill_by_its_request_index() -> None:
    # Regression: skills were validated after folding into a dict, so after a duplicate the
    # indexes shifted and "Bad" (skills[2]) was reported as skills[1].
    msg = create_msg(
        display_name="Ada",
        skills=[skill("billing", 3), skill("billing", 3), skill("Bad", 3)],
        capacity=1,
    )
    assert fields(raises_with(c.create_agent, msg)) == [
        "agent.skills[1].skill",
        "agent.skills[2].skill",
    ]


def test_create_agent_duplicate_languages_fold() -> None:
    _, profile = c.create_agent(create_msg(languages=["en", "EN", "en"], capacity=1))
    assert profile.languages == frozenset({"en"})


# --- profile_update -----------------------------------------------------------------------------


def update_msg(paths: list[str] | None = None, **agent_fields: Any) -> Any:
    return pool_service_pb2.UpdateAgentRequest(
        agent=agent_pb2.Agent(agent_id="ada", **agent_fields),
        update_mask=FieldMask(paths=paths or []),
    )


def test_profile_update_takes_only_masked_fields() -> None:
    msg = update_msg(["display_name"], display_name="Ada L.", skills=[skill("tech", 5)], capacity=4)
    assert c.profile_update(msg) == model.ProfileUpdate(display_name="Ada L.")


def test_profile_update_masked_fields_are_converted() -> None:
    msg = update_msg(
        ["skills", "languages", "capacity"],
        skills=[skill("billing", 2)],
        languages=["DE", "en"],
        capacity=0,
    )
    assert c.profile_update(msg) == model.ProfileUpdate(
        skills={"billing": 2}, languages=frozenset({"de", "en"}), capacity=1
    )


def test_profile_update_masked_empty_fields_clear() -> None:
    update = c.profile_update(update_msg(["skills", "languages", "display_name"]))
    assert update == model.ProfileUpdate(display_name="", skills={}, languages=frozenset())


def test_profile_update_empty_mask_means_the_non_empty_fields() -> None:
    assert c.profile_update(update_msg(display_name="Ada", capacity=3)) == model.ProfileUpdate(
        display_name="Ada", capacity=3
    )
    assert c.profile_update(update_msg(languages=["fr"])) == model.ProfileUpdate(
        languages=frozenset({"fr"})
    )
    assert c.profile_update(update_msg(skills=[skill("fraud", 1)])) == model.ProfileUpdate(
        skills={"fraud": 1}
    )


def test_profile_update_with_nothing_to_update() -> None:
    assert raises_with(c.profile_update, update_msg()) == [
        FieldViolation("update_mask", "nothing to update")
    ]


def test_profile_update_unknown_mask_paths() -> None:
    found = raises_with(c.profile_update, update_msg(["capacity", "state", "agent_id"], capacity=2))
    assert fields(found) == ["update_mask.paths[1]", "update_mask.paths[2]"]
    assert all("display_name, skills, languages, capacity" in v.description for v in found)


def test_profile_update_validates_the_masked_fields_all_at_once() -> None:
    msg = update_msg(
        ["display_name", "skills", "languages", "capacity"],
        display_name="x" * 101,
        skills=[skill("billing", 3), skill("billing", 6)],
        languages=["en", "english"],
        capacity=21,
    )
    assert fields(raises_with(c.profile_update, msg)) == [
        "agent.display_name",
        "agent.skills[1].proficiency",
        "agent.skills[1].skill",
        "agent.languages[1]",
        "agent.capacity",
    ]


def test_profile_update_does_not_validate_unmasked_fields() -> None:
    msg = update_msg(["capacity"], capacity=2, display_name="x" * 500, languages=["??"])
    assert c.profile_update(msg) == model.ProfileUpdate(capacity=2)


def test_profile_update_names_a_bad_skill_by_its_request_index() -> None:
    msg = update_msg(["skills"], skills=[skill("a", 1), skill("a", 1), skill("Bad", 1)])
    assert fields(raises_with(c.profile_update, msg)) == [
        "agent.skills[1].skill",
        "agent.skills[2].skill",
    ]


# --- list_filter --------------------------------------------------------------------------------


def test_list_filter_defaults() -> None:
    assert c.list_filter(pool_service_pb2.ListAgentsRequest()) == (None, None)


def test_list_filter_state_and_skill() -> None:
    msg = pool_service_pb2.ListAgentsRequest(
        page_size=1000, state=agent_pb2.AGENT_STATE_RECONNECTING, skill="billing"
    )
    assert c.list_filter(msg) == (model.AgentState.RECONNECTING, "billing")


def test_list_filter_violations_all_at_once() -> None:
    msg = pool_service_pb2.ListAgentsRequest(page_size=1001, state=42, skill="Not Valid")
    assert fields(raises_with(c.list_filter, msg)) == ["page_size", "state", "skill"]
    assert fields(raises_with(c.list_filter, pool_service_pb2.ListAgentsRequest(page_size=-1))) == [
        "page_size"
    ]


# --- completion, status, decline ----------------------------------------------------------------


def completion_msg(**overrides: Any) -> agent_service_pb2.CompleteInteractionRequest:
    fields_: dict[str, Any] = {
        "agent_id": "ada",
        "interaction_id": INTERACTION_ID,
        "outcome": handoff_pb2.OUTCOME_RESOLVED,
        "disposition_code": "REFUND/FULL",
        "notes": "refunded\nthe fee",
    }
    fields_.update(overrides)
    return agent_service_pb2.CompleteInteractionRequest(**fields_)


def test_completion_converts() -> None:
    assert c.completion(completion_msg()) == model.Completion(
        model.Outcome.RESOLVED, "REFUND/FULL", "refunded\nthe fee"
    )


def test_completion_outcome_is_required() -> None:
    assert raises_with(c.completion, completion_msg(outcome=0)) == [
        FieldViolation("outcome", "required")
    ]
    assert raises_with(c.completion, completion_msg(outcome=17)) == [
        FieldViolation("outcome", "unknown value 17")
    ]


def test_completion_violations_all_at_once() -> None:
    msg = completion_msg(
        agent_id="", interaction_id="x", outcome=0, disposition_code="no spaces", notes="\x00"
    )
    assert fields(raises_with(c.completion, msg)) == [
        "agent_id",
        "interaction_id",
        "outcome",
        "disposition_code",
        "notes",
    ]


@pytest.mark.parametrize(
    ("number", "status"),
    [
        (agent_pb2.AGENT_STATUS_AVAILABLE, model.AgentStatus.AVAILABLE),
        (agent_pb2.AGENT_STATUS_AWAY, model.AgentStatus.AWAY),
    ],
)
def test_agent_status_values(number: int, status: model.AgentStatus) -> None:
    assert c.agent_status("set_status.status", number, default=None) is status
    assert c.agent_status("hello.initial_status", number, default=model.AgentStatus.AWAY) is status


def test_agent_status_unspecified_takes_the_default() -> None:
    got = c.agent_status("hello.initial_status", 0, default=model.AgentStatus.AVAILABLE)
    assert got is model.AgentStatus.AVAILABLE


def test_agent_status_unspecified_without_default_is_required() -> None:
    [v] = raises_with(c.agent_status, "set_status.status", 0, default=None)
    assert v.field == "set_status.status"
    assert v.description.startswith("required")


def test_agent_status_unknown_is_refused_even_with_a_default() -> None:
    assert raises_with(
        c.agent_status, "hello.initial_status", 9, default=model.AgentStatus.AVAILABLE
    ) == [FieldViolation("hello.initial_status", "unknown value 9")]


@pytest.mark.parametrize("reason", list(model.DeclineReason))
def test_decline_reason_values(reason: model.DeclineReason) -> None:
    number = agent_service_pb2.DeclineReason.Value(f"DECLINE_REASON_{reason.name}")
    assert c.decline_reason(number) is reason


def test_decline_reason_unknown() -> None:
    assert raises_with(c.decline_reason, 66) == [
        FieldViolation("decline_offer.reason", "unknown value 66")
    ]


# --- outgoing: handoffs -------------------------------------------------------------------------


def test_handoff_pb_queued() -> None:
    h = handoff(
        req=request(skills={"billing": 3, "fraud": 2}, language="en", urgency=model.Urgency.HIGH),
        created_at=at(0),
        requeue_count=1,
    )
    msg = c.handoff_pb(
        HandoffView(h, position=3, estimated_wait=timedelta(minutes=4), agent_name=None)
    )
    assert msg.handoff_id == HANDOFF_ID
    assert msg.request_id == REQUEST_ID
    assert (msg.conversation_id, msg.customer_id) == ("conv-1", "cust-1")
    assert msg.interaction_type == "billing_dispute"
    assert [(r.skill, r.min_proficiency) for r in msg.required_skills] == [
        ("billing", 3),
        ("fraud", 2),
    ]
    assert msg.language == "en"
    assert msg.urgency == handoff_pb2.URGENCY_HIGH
    assert msg.reason == handoff_pb2.HANDOFF_REASON_CUSTOMER_REQUEST
    assert msg.summary == "customer disputes a charge"
    assert msg.state == handoff_pb2.HANDOFF_STATE_QUEUED
    assert msg.queue_position == 3
    assert msg.requeue_count == 1
    assert msg.estimated_wait.ToTimedelta() == timedelta(minutes=4)
    assert utc(msg.create_time) == at(0)
    assert utc(msg.target_time) == at(60)
    for unset in ("assigned_agent", "assign_time", "end_time"):
        assert not msg.HasField(unset), unset
    assert msg.outcome == handoff_pb2.OUTCOME_UNSPECIFIED


def test_handoff_pb_without_estimate_or_language() -> None:
    msg = c.handoff_pb(HandoffView(handoff(language=None), 1, None, None))
    assert not msg.HasField("estimated_wait")
    assert msg.language == ""


def test_handoff_pb_assigned_names_the_agent() -> None:
    h = handoff(
        state=model.HandoffState.ASSIGNED,
        agent_id="ada",
        offer_id=OFFER_ID,
        assigned_at=at(20),
    )
    msg = c.handoff_pb(HandoffView(h, 0, None, "Ada L."))
    assert msg.state == handoff_pb2.HANDOFF_STATE_ASSIGNED
    assert msg.assigned_agent == handoff_pb2.AssignedAgent(agent_id="ada", display_name="Ada L.")
    assert utc(msg.assign_time) == at(20)
    # Without a name (the agent is gone) the bot gets no agent.
    assert not c.handoff_pb(HandoffView(h, 0, None, None)).HasField("assigned_agent")


def test_handoff_pb_completed_carries_the_outcome() -> None:
    i = completed_interaction(accepted=at(20), ended=at(320), outcome=model.Outcome.TRANSFERRED)
    msg = c.handoff_pb(HandoffView(i.handoff, 0, None, "Ada"))
    assert msg.state == handoff_pb2.HANDOFF_STATE_COMPLETED
    assert msg.outcome == handoff_pb2.OUTCOME_TRANSFERRED
    assert msg.disposition_code == "REFUND/OK"
    assert utc(msg.end_time) == at(320)


# --- outgoing: agents ---------------------------------------------------------------------------


def test_agent_pb() -> None:
    a = agent(
        "ada",
        display_name="Ada",
        skills={"tech": 2, "billing": 5},
        languages=["fr", "de", "en"],
        capacity=2,
        load=2,
        consecutive_misses=1,
        last_assigned_at=at(30),
    )
    msg = c.agent_pb(a)
    assert msg.agent_id == "ada"
    assert msg.display_name == "Ada"
    assert [(s.skill, s.proficiency) for s in msg.skills] == [("billing", 5), ("tech", 2)]
    assert list(msg.languages) == ["de", "en", "fr"]
    assert (msg.capacity, msg.load, msg.consecutive_misses) == (2, 2, 1)
    assert msg.state == agent_pb2.AGENT_STATE_BUSY
    assert utc(msg.last_assign_time) == at(30)
    assert utc(msg.create_time) == T0
    assert utc(msg.update_time) == T0


@pytest.mark.parametrize(
    ("kwargs", "state"),
    [
        ({}, agent_pb2.AGENT_STATE_AVAILABLE),
        ({"status": model.AgentStatus.AWAY}, agent_pb2.AGENT_STATE_AWAY),
        ({"status": model.AgentStatus.OFFLINE, "connected": False}, agent_pb2.AGENT_STATE_OFFLINE),
        ({"connected": False}, agent_pb2.AGENT_STATE_RECONNECTING),
    ],
)
def test_agent_pb_state(kwargs: dict[str, Any], state: int) -> None:
    msg = c.agent_pb(agent(**kwargs))
    assert msg.state == state
    assert not msg.HasField("last_assign_time")


def test_agent_profile_round_trips_through_agent_pb() -> None:
    a = agent(
        "ada", display_name="Ada", skills={"billing": 5, "tech": 1}, languages=["en"], capacity=4
    )
    msg = pool_service_pb2.CreateAgentRequest(agent_id=a.id, agent=c.agent_pb(a))
    assert c.create_agent(msg) == (a.id, a.profile)


# --- outgoing: interactions and the agent stream ------------------------------------------------


def test_interaction_pb_completed() -> None:
    clock = FakeClock()
    accepted = clock.advance(10)
    ended = clock.advance(timedelta(minutes=7))
    msg = c.interaction_pb(completed_interaction(accepted=accepted, ended=ended))
    assert msg.interaction_id == OFFER_ID
    assert msg.details.handoff_id == HANDOFF_ID
    assert utc(msg.accept_time) == accepted
    assert utc(msg.complete_time) == ended
    assert msg.handle_time.ToTimedelta() == timedelta(minutes=7)
    assert msg.outcome == handoff_pb2.OUTCOME_RESOLVED
    assert msg.disposition_code == "REFUND/OK"


def test_interaction_pb_active() -> None:
    o = offer(state=model.OfferState.ACCEPTED, created_at=at(0), decided_at=at(5))
    h = handoff(state=model.HandoffState.ASSIGNED, agent_id="agent-1", offer_id=OFFER_ID)
    msg = c.interaction_pb(model.Interaction(o, h))
    assert utc(msg.accept_time) == at(5)
    for unset in ("complete_time", "handle_time"):
        assert not msg.HasField(unset), unset
    assert msg.outcome == handoff_pb2.OUTCOME_UNSPECIFIED


def test_interaction_details() -> None:
    h = handoff(
        req=request(skills={"fraud": 4}, language="de", urgency=model.Urgency.CRITICAL),
        created_at=at(3),
        requeue_count=2,
    )
    d = c.interaction_details(h)
    assert d.handoff_id == HANDOFF_ID
    assert (d.conversation_id, d.customer_id, d.interaction_type) == (
        "conv-1",
        "cust-1",
        "billing_dispute",
    )
    assert d.urgency == handoff_pb2.URGENCY_CRITICAL
    assert d.reason == handoff_pb2.HANDOFF_REASON_CUSTOMER_REQUEST
    assert d.summary == "customer disputes a charge"
    assert [(r.skill, r.min_proficiency) for r in d.required_skills] == [("fraud", 4)]
    assert d.language == "de"
    assert d.requeue_count == 2
    assert utc(d.create_time) == at(3)


def test_connect_response_offer_made() -> None:
    o = offer(created_at=at(1))
    msg = c.connect_response(OfferMade(o, handoff()))
    assert msg is not None
    assert msg.WhichOneof("event") == "offer"
    assert msg.offer.offer_id == OFFER_ID
    assert msg.offer.details.handoff_id == HANDOFF_ID
    assert utc(msg.offer.offer_time) == at(1)
    assert utc(msg.offer.expire_time) == at(16)
    assert msg.command_id == ""


def test_connect_response_offer_withdrawn() -> None:
    msg = c.connect_response(OfferWithdrawn(OFFER_ID, model.RescindReason.AGENT_AWAY, "cmd-1"))
    assert msg is not None
    assert msg.command_id == "cmd-1"
    assert msg.offer_rescinded.offer_id == OFFER_ID
    assert msg.offer_rescinded.reason == agent_service_pb2.RESCIND_REASON_AGENT_AWAY


def test_connect_response_assignment_made() -> None:
    i = completed_interaction(accepted=at(0), ended=at(60))
    msg = c.connect_response(AssignmentMade(i, "cmd-2"))
    assert msg is not None
    assert msg.command_id == "cmd-2"
    assert msg.assignment_confirmed.interaction == c.interaction_pb(i)


def test_connect_response_status_updated() -> None:
    event = StatusUpdated(model.AgentStatus.AWAY, model.StatusChangeReason.MISSED_OFFERS)
    msg = c.connect_response(event)
    assert msg is not None
    assert msg.status_changed.status == agent_pb2.AGENT_STATUS_AWAY
    assert msg.status_changed.reason == agent_service_pb2.STATUS_CHANGE_REASON_MISSED_OFFERS


def test_connect_response_heartbeat() -> None:
    msg = c.connect_response(HeartbeatAck(at(99), "hb-7"))
    assert msg is not None
    assert msg.command_id == "hb-7"
    assert utc(msg.heartbeat.server_time) == at(99)


def test_connect_response_command_failed_invalid_argument() -> None:
    error = InvalidArgument([FieldViolation("accept_offer.offer_id", "must be a UUID")])
    msg = c.connect_response(CommandFailed(error, "cmd-3"))
    assert msg is not None
    rejected = msg.command_rejected
    assert msg.command_id == "cmd-3"
    assert rejected.code == 3  # google.rpc.Code.INVALID_ARGUMENT
    assert rejected.reason == "INVALID_ARGUMENT"
    assert rejected.message == error.message
    assert dict(rejected.metadata) == {"accept_offer.offer_id": "must be a UUID"}


def test_connect_response_command_failed_domain_error() -> None:
    error = NotFound("no such offer", reason="OFFER_NOT_FOUND", metadata={"offer_id": OFFER_ID})
    msg = c.connect_response(CommandFailed(error, "cmd-4"))
    assert msg is not None
    assert msg.command_rejected.code == 5  # google.rpc.Code.NOT_FOUND
    assert msg.command_rejected.reason == "OFFER_NOT_FOUND"
    assert dict(msg.command_rejected.metadata) == {"offer_id": OFFER_ID}


def test_connect_response_stream_closing_is_none() -> None:
    assert c.connect_response(StreamClosing("replaced")) is None


def test_connect_response_refuses_unknown_events() -> None:
    with pytest.raises(TypeError):
        c.connect_response("not an event")  # type: ignore[arg-type]


def test_welcome() -> None:
    session = model.Session(
        id="sess-1",
        agent_id="ada",
        state=model.SessionState.CONNECTED,
        token_hash="0" * 64,
        replica_id="r1",
        connection_id="conn-1",
        created_at=T0,
        disconnected_at=None,
        grace_expires_at=None,
        ended_at=None,
        end_reason=None,
    )
    active = completed_interaction(accepted=at(0), ended=at(60))
    conn = Connection(
        session=session,
        resume_token="tok",
        agent=agent("ada"),
        interactions=[active],
        channel=AgentChannel("ada", "sess-1"),
        resumed=True,
    )
    msg = c.welcome(conn, timedelta(seconds=10), timedelta(seconds=30), "hello-1")
    assert msg.command_id == "hello-1"
    w = msg.welcome
    assert (w.session_id, w.resume_token, w.resumed) == ("sess-1", "tok", True)
    assert w.heartbeat_interval.ToTimedelta() == timedelta(seconds=10)
    assert w.grace_period.ToTimedelta() == timedelta(seconds=30)
    assert w.agent == c.agent_pb(conn.agent)
    assert list(w.active_interactions) == [c.interaction_pb(active)]


# --- outgoing: pool status ----------------------------------------------------------------------


def pool_status(oldest: datetime | None, taken_at: datetime) -> PoolStatus:
    return PoolStatus(
        snapshot=PoolSnapshot(
            agents_by_state={model.AgentState.AVAILABLE: 3, model.AgentState.BUSY: 1},
            skills=[Capacity("billing", 2, 3)],
            languages=[Capacity("en", 3, 4), Capacity("de", 1, 1)],
            queue_by_urgency={
                model.Urgency.LOW: 2,
                model.Urgency.CRITICAL: 1,
                model.Urgency.NORMAL: 5,
            },
            queue_by_type={"billing_dispute": 6, "fraud": 2},
            oldest_created_at=oldest,
        ),
        taken_at=taken_at,
    )


def test_pool_status_pb() -> None:
    msg = c.pool_status_pb(pool_status(at(0), at(90)))
    assert {(s.state, s.count) for s in msg.agents_by_state} == {
        (agent_pb2.AGENT_STATE_AVAILABLE, 3),
        (agent_pb2.AGENT_STATE_BUSY, 1),
    }
    assert [(x.key, x.available_agents, x.free_capacity) for x in msg.skills] == [("billing", 2, 3)]
    assert [(x.key, x.available_agents, x.free_capacity) for x in msg.languages] == [
        ("en", 3, 4),
        ("de", 1, 1),
    ]
    # Most urgent first.
    assert [(u.urgency, u.count) for u in msg.queue_by_urgency] == [
        (handoff_pb2.URGENCY_CRITICAL, 1),
        (handoff_pb2.URGENCY_NORMAL, 5),
        (handoff_pb2.URGENCY_LOW, 2),
    ]
    assert {(t.interaction_type, t.count) for t in msg.queue_by_interaction_type} == {
        ("billing_dispute", 6),
        ("fraud", 2),
    }
    assert msg.oldest_wait.ToTimedelta() == timedelta(seconds=90)
    assert utc(msg.snapshot_time) == at(90)


def test_pool_status_pb_empty_queue_and_clock_skew() -> None:
    assert c.pool_status_pb(pool_status(None, at(10))).oldest_wait.ToTimedelta() == timedelta(0)
    # A handoff stamped after the snapshot (clocks of two replicas) never shows a negative wait.
    skewed = c.pool_status_pb(pool_status(at(12), at(10)))
    assert skewed.oldest_wait.ToTimedelta() == timedelta(0)
    assert skewed.HasField("oldest_wait")
