"""Domain entities (humanline.domain.model): the derived agent state, free capacity, request
and completion fingerprints (idempotency), profile updates, handle time and the handoff
lifecycle predicates."""

from __future__ import annotations

import dataclasses
import itertools
import re
import uuid
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanline.domain.clock import FakeClock
from humanline.domain.model import (
    AgentState,
    AgentStatus,
    Completion,
    HandoffReason,
    HandoffRequest,
    HandoffState,
    Interaction,
    OfferState,
    Outcome,
    ProfileUpdate,
    SkillRequirement,
    Urgency,
    new_id,
)
from tests.unit.builders import (
    OFFER_ID,
    agent,
    completed_interaction,
    handoff,
    offer,
    profile,
    request,
)

# --- Agent.state ------------------------------------------------------------------------------


def expected_state(status: AgentStatus, connected: bool, load: int, capacity: int) -> AgentState:
    """The documented precedence: OFFLINE, then RECONNECTING, then AWAY, then BUSY."""
    table = {
        AgentStatus.OFFLINE: AgentState.OFFLINE,
        AgentStatus.AWAY: AgentState.AWAY,
        AgentStatus.AVAILABLE: AgentState.AVAILABLE,
    }
    if status is AgentStatus.OFFLINE:
        return AgentState.OFFLINE
    if not connected:
        return AgentState.RECONNECTING
    if status is AgentStatus.AVAILABLE and load >= capacity:
        return AgentState.BUSY
    return table[status]


STATE_CASES = [
    (status, connected, load, capacity)
    for status, connected, capacity in itertools.product(AgentStatus, (True, False), (1, 3))
    for load in sorted({0, capacity - 1, capacity, capacity + 1})
]


@pytest.mark.parametrize(("status", "connected", "load", "capacity"), STATE_CASES)
def test_agent_state_every_combination(
    status: AgentStatus, connected: bool, load: int, capacity: int
) -> None:
    a = agent(status=status, connected=connected, load=load, capacity=capacity)
    assert a.state is expected_state(status, connected, load, capacity)


@pytest.mark.parametrize(
    ("status", "connected", "load", "capacity", "state"),
    [
        (AgentStatus.AVAILABLE, True, 0, 1, AgentState.AVAILABLE),
        (AgentStatus.AVAILABLE, True, 2, 3, AgentState.AVAILABLE),
        (AgentStatus.AVAILABLE, True, 1, 1, AgentState.BUSY),
        (AgentStatus.AVAILABLE, True, 4, 3, AgentState.BUSY),
        (AgentStatus.AVAILABLE, False, 0, 1, AgentState.RECONNECTING),
        (AgentStatus.AVAILABLE, False, 1, 1, AgentState.RECONNECTING),
        (AgentStatus.AWAY, True, 0, 1, AgentState.AWAY),
        (AgentStatus.AWAY, True, 1, 1, AgentState.AWAY),  # away wins over busy
        (AgentStatus.AWAY, False, 0, 1, AgentState.RECONNECTING),
        (AgentStatus.OFFLINE, False, 0, 1, AgentState.OFFLINE),
        (AgentStatus.OFFLINE, True, 0, 1, AgentState.OFFLINE),
        (AgentStatus.OFFLINE, False, 1, 1, AgentState.OFFLINE),
    ],
)
def test_agent_state_examples(
    status: AgentStatus, connected: bool, load: int, capacity: int, state: AgentState
) -> None:
    assert agent(status=status, connected=connected, load=load, capacity=capacity).state is state


def test_every_agent_state_is_reachable() -> None:
    reached = {
        agent(status=s, connected=c, load=load, capacity=cap).state
        for s, c, load, cap in STATE_CASES
    }
    assert reached == set(AgentState)


@pytest.mark.parametrize(("load", "capacity", "free"), [(0, 1, 1), (1, 3, 2), (3, 3, 0), (5, 3, 0)])
def test_free_capacity_never_negative(load: int, capacity: int, free: int) -> None:
    assert agent(load=load, capacity=capacity).free_capacity == free


# --- HandoffRequest.fingerprint ---------------------------------------------------------------


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", request().fingerprint())


def test_fingerprint_equal_for_equal_content() -> None:
    assert request().fingerprint() == request().fingerprint()


def test_fingerprint_ignores_request_id() -> None:
    a = request(request_id="6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a10")
    b = request(request_id="00000000-0000-4000-8000-000000000000")
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_ignores_required_skills_order() -> None:
    a = request(skills=[("billing", 3), ("fraud", 2), ("tech", 5)])
    b = request(skills=[("tech", 5), ("billing", 3), ("fraud", 2)])
    assert a.fingerprint() == b.fingerprint()


BASE = request(skills=[("billing", 3), ("fraud", 2)], language="en")

CHANGES = {
    "conversation_id": {"conversation_id": "conv-2"},
    "customer_id": {"customer_id": "cust-2"},
    "interaction_type": {"interaction_type": "fraud_report"},
    "skill_added": {"required_skills": (*BASE.required_skills, SkillRequirement("tech", 1))},
    "skill_removed": {"required_skills": BASE.required_skills[:1]},
    "skill_level": {
        "required_skills": (SkillRequirement("billing", 4), SkillRequirement("fraud", 2))
    },
    "levels_swapped": {
        "required_skills": (SkillRequirement("billing", 2), SkillRequirement("fraud", 3))
    },
    "skill_renamed": {
        "required_skills": (SkillRequirement("billing", 3), SkillRequirement("tech", 2))
    },
    "language": {"language": "de"},
    "language_dropped": {"language": None},
    "urgency": {"urgency": Urgency.CRITICAL},
    "summary": {"summary": BASE.summary + "."},
    "reason": {"reason": HandoffReason.TOOL_FAILURE},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_fingerprint_differs_when_content_differs(change: dict[str, object]) -> None:
    other = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert other != BASE
    assert other.fingerprint() != BASE.fingerprint()


def test_fingerprint_tells_fields_apart() -> None:
    # Moving text from one field to another is other content.
    a = request(conversation_id="ab", customer_id="c")
    b = request(conversation_id="a", customer_id="bc")
    assert a.fingerprint() != b.fingerprint()
    assert request(summary="").fingerprint() != request(summary="null").fingerprint()
    assert request(language=None).fingerprint() != request(language="null").fingerprint()


texts = st.text(max_size=12)
skill_lists = st.lists(
    st.tuples(st.sampled_from(["billing", "fraud", "tech", "legal"]), st.integers(1, 5)),
    max_size=4,
    unique_by=lambda p: p[0],
)


@st.composite
def requests(draw: st.DrawFn) -> HandoffRequest:
    return request(
        request_id=draw(st.uuids()).hex,
        conversation_id=draw(texts),
        customer_id=draw(texts),
        interaction_type=draw(st.sampled_from(["billing", "fraud"])),
        skills=draw(skill_lists),
        language=draw(st.none() | st.sampled_from(["en", "de"])),
        urgency=draw(st.sampled_from(list(Urgency))),
        summary=draw(texts),
        reason=draw(st.sampled_from(list(HandoffReason))),
    )


@settings(max_examples=300)
@given(req=requests(), data=st.data())
def test_fingerprint_depends_on_content_only(req: HandoffRequest, data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(req.required_skills))
    same = dataclasses.replace(
        req, request_id=str(data.draw(st.uuids())), required_skills=tuple(shuffled)
    )
    assert same.fingerprint() == req.fingerprint()


@settings(max_examples=300)
@given(a=requests(), b=requests())
def test_fingerprint_equal_exactly_when_content_equal(a: HandoffRequest, b: HandoffRequest) -> None:
    def content(r: HandoffRequest) -> tuple[object, ...]:
        return (
            r.conversation_id,
            r.customer_id,
            r.interaction_type,
            frozenset((s.skill, s.min_proficiency) for s in r.required_skills),
            r.language,
            r.urgency,
            r.summary,
            r.reason,
        )

    assert (a.fingerprint() == b.fingerprint()) == (content(a) == content(b))


# --- Completion.fingerprint ---------------------------------------------------------------------


def test_completion_fingerprint_equal_for_equal_completions() -> None:
    a = Completion(Outcome.RESOLVED, "REFUND/OK", "refunded the fee")
    b = Completion(Outcome.RESOLVED, "REFUND/OK", "refunded the fee")
    assert a.fingerprint() == b.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", a.fingerprint())


@pytest.mark.parametrize(
    "other",
    [
        Completion(Outcome.UNRESOLVED, "REFUND/OK", "refunded the fee"),
        Completion(Outcome.RESOLVED, "REFUND/NO", "refunded the fee"),
        Completion(Outcome.RESOLVED, "REFUND/OK", "refunded the fee."),
        Completion(Outcome.RESOLVED, "REFUND/OKrefunded", " the fee"),
        Completion(Outcome.RESOLVED, "", "REFUND/OKrefunded the fee"),
    ],
)
def test_completion_fingerprint_differs_for_any_difference(other: Completion) -> None:
    base = Completion(Outcome.RESOLVED, "REFUND/OK", "refunded the fee")
    assert other.fingerprint() != base.fingerprint()


@settings(max_examples=300)
@given(
    a=st.builds(Completion, st.sampled_from(list(Outcome)), texts, texts),
    b=st.builds(Completion, st.sampled_from(list(Outcome)), texts, texts),
)
def test_completion_fingerprint_equal_exactly_when_equal(a: Completion, b: Completion) -> None:
    assert (a.fingerprint() == b.fingerprint()) == (a == b)


# --- ProfileUpdate.apply ------------------------------------------------------------------------

ORIGINAL = profile(
    display_name="Ada", skills={"billing": 3, "fraud": 5}, languages=["en", "de"], capacity=2
)


def test_empty_update_changes_nothing() -> None:
    assert ProfileUpdate().apply(ORIGINAL) == ORIGINAL


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (ProfileUpdate(display_name="Grace"), dataclasses.replace(ORIGINAL, display_name="Grace")),
        (ProfileUpdate(skills={"tech": 1}), dataclasses.replace(ORIGINAL, skills={"tech": 1})),
        (
            ProfileUpdate(languages=frozenset({"fr"})),
            dataclasses.replace(ORIGINAL, languages=frozenset({"fr"})),
        ),
        (ProfileUpdate(capacity=7), dataclasses.replace(ORIGINAL, capacity=7)),
    ],
)
def test_update_replaces_only_the_given_field(update: ProfileUpdate, expected: object) -> None:
    assert update.apply(ORIGINAL) == expected


def test_update_replaces_every_given_field() -> None:
    update = ProfileUpdate(
        display_name="Grace", skills={"tech": 4}, languages=frozenset({"fr"}), capacity=5
    )
    assert update.apply(ORIGINAL) == profile(
        display_name="Grace", skills={"tech": 4}, languages=["fr"], capacity=5
    )


def test_update_with_empty_values_clears_rather_than_keeps() -> None:
    # None means "leave as is"; an empty value is a value.
    cleared = ProfileUpdate(display_name="", skills={}, languages=frozenset()).apply(ORIGINAL)
    assert cleared.display_name == ""
    assert dict(cleared.skills) == {}
    assert cleared.languages == frozenset()
    assert cleared.capacity == ORIGINAL.capacity


def test_update_leaves_the_original_alone() -> None:
    before = dataclasses.replace(ORIGINAL)
    ProfileUpdate(display_name="Grace", capacity=9).apply(ORIGINAL)
    assert before == ORIGINAL


# --- Interaction --------------------------------------------------------------------------------


def test_handle_time_runs_from_accept_to_completion() -> None:
    clock = FakeClock()
    accepted = clock.now()
    ended = clock.advance(timedelta(minutes=4, seconds=30))
    i = completed_interaction(accepted=accepted, ended=ended)
    assert i.handle_time == timedelta(minutes=4, seconds=30)
    assert i.id == OFFER_ID


@pytest.mark.parametrize(
    "state", [s for s in OfferState if s is not OfferState.COMPLETED], ids=lambda s: s.value
)
def test_handle_time_only_once_completed(state: OfferState) -> None:
    clock = FakeClock()
    done = completed_interaction(accepted=clock.now(), ended=clock.advance(60))
    other = Interaction(offer=dataclasses.replace(done.offer, state=state), handoff=done.handoff)
    assert other.handle_time is None


def test_handle_time_none_without_both_instants() -> None:
    clock = FakeClock()
    done = completed_interaction(accepted=clock.now(), ended=clock.advance(60))
    no_end = Interaction(done.offer, dataclasses.replace(done.handoff, ended_at=None))
    no_accept = Interaction(dataclasses.replace(done.offer, decided_at=None), done.handoff)
    assert no_end.handle_time is None
    assert no_accept.handle_time is None


def test_interaction_id_is_the_offer_id() -> None:
    i = Interaction(offer("b4e1c7a0-0000-4000-8000-000000000001"), handoff())
    assert i.id == "b4e1c7a0-0000-4000-8000-000000000001"


# --- HandoffState -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "waiting", "terminal"),
    [
        (HandoffState.QUEUED, True, False),
        (HandoffState.OFFERED, True, False),
        (HandoffState.ASSIGNED, False, False),
        (HandoffState.COMPLETED, False, True),
        (HandoffState.CANCELLED, False, True),
        (HandoffState.EXPIRED, False, True),
    ],
)
def test_handoff_state_predicates(state: HandoffState, waiting: bool, terminal: bool) -> None:
    assert state.waiting is waiting
    assert state.terminal is terminal


def test_handoff_state_table_is_complete() -> None:
    # A state added later must be classified deliberately (and added to the table above).
    assert {s.value for s in HandoffState} == {
        "QUEUED",
        "OFFERED",
        "ASSIGNED",
        "COMPLETED",
        "CANCELLED",
        "EXPIRED",
    }
    assert not any(s.waiting and s.terminal for s in HandoffState)


def test_urgency_orders_by_need() -> None:
    assert Urgency.LOW < Urgency.NORMAL < Urgency.HIGH < Urgency.CRITICAL


def test_new_ids_are_uuids_that_increase_with_time() -> None:
    """Handoff and offer ids are UUIDv7: made one after the other, they sort in the order
    they were made, so that new rows sit together at one end of the indexes keyed by them."""
    ids = [new_id() for _ in range(2_000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
