"""Input rules (humanline.domain.validation): every check_* function with valid and invalid
values, the exact field paths it reports, its limits, control characters, UUIDs, and that a
request reports all of its violations at once."""

from __future__ import annotations

import string
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanline.domain.errors import FieldViolation, InvalidArgument, Violations
from humanline.domain.model import SkillRequirement
from humanline.domain.validation import (
    MAX_AGENT_SKILLS,
    MAX_LANGUAGES,
    MAX_REQUIRED_SKILLS,
    check_agent_skills,
    check_capacity,
    check_completion,
    check_handoff_request,
    check_identifier,
    check_language,
    check_languages,
    check_proficiency,
    check_skill_requirements,
    check_text,
    check_uuid,
    normalize_language,
    normalize_uuid,
)
from tests.unit.builders import request


def violations_of(check: Callable[..., None], *args: Any, **kwargs: Any) -> list[FieldViolation]:
    """The violations `check` records for `args`."""
    v = Violations()
    check(v, *args, **kwargs)
    try:
        v.raise_if_any()
    except InvalidArgument as e:
        return e.violations
    return []


def fields_of(check: Callable[..., None], *args: Any, **kwargs: Any) -> list[str]:
    return [fv.field for fv in violations_of(check, *args, **kwargs)]


# --- Violations ---------------------------------------------------------------------------------


def test_violations_collect_in_order_and_raise_once() -> None:
    v = Violations()
    v.raise_if_any()  # nothing collected: no error
    v.add("a", "bad a")
    assert v.check(True, "b", "never recorded") is True
    assert v.check(False, "c", "bad c") is False
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    assert info.value.violations == [FieldViolation("a", "bad a"), FieldViolation("c", "bad c")]
    assert info.value.reason == "INVALID_ARGUMENT"
    assert "a, c" in info.value.message


# --- identifiers --------------------------------------------------------------------------------

IDENT_CHARS = string.ascii_lowercase + string.digits + "_.-"


@pytest.mark.parametrize(
    "value", ["a", "0", "billing", "billing_dispute", "fraud.v2", "a-b_c.d", "9lives", "a" * 64]
)
def test_identifier_valid(value: str) -> None:
    assert violations_of(check_identifier, "agent_id", value) == []


def test_identifier_required() -> None:
    assert violations_of(check_identifier, "agent_id", "") == [
        FieldViolation("agent_id", "required")
    ]


@pytest.mark.parametrize(
    "value",
    [
        "a" * 65,
        "Billing",
        "_a",
        "-a",
        ".a",
        "a b",
        "a/b",
        "café",
        "a\n",
        " a",
        "a:b",
        "\uff21\uff22",
    ],
)
def test_identifier_invalid(value: str) -> None:
    [violation] = violations_of(check_identifier, "interaction_type", value)
    assert violation.field == "interaction_type"
    assert "1-64 characters" in violation.description


def ref_identifier_ok(value: str) -> bool:
    return (
        1 <= len(value) <= 64
        and all(c in IDENT_CHARS for c in value)
        and value[0] in string.ascii_lowercase + string.digits
    )


@settings(max_examples=1000)
@given(
    value=st.text(alphabet=IDENT_CHARS + "A_Z é\n/", max_size=70)
    | st.text(alphabet=IDENT_CHARS, min_size=60, max_size=70)
)
def test_identifier_matches_reference(value: str) -> None:
    assert (violations_of(check_identifier, "f", value) == []) == ref_identifier_ok(value)


# --- UUIDs --------------------------------------------------------------------------------------


def test_uuid_required() -> None:
    assert violations_of(check_uuid, "request_id", "") == [FieldViolation("request_id", "required")]


@pytest.mark.parametrize(
    "value",
    [
        "6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a10",
        "6F1C1A2E-6A43-4A8E-9D0B-8D6E2F1F9A10",
        "{6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a10}",
        "urn:uuid:6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a10",
        "6f1c1a2e6a434a8e9d0b8d6e2f1f9a10",
    ],
)
def test_uuid_forms_accepted_and_normalized(value: str) -> None:
    assert violations_of(check_uuid, "request_id", value) == []
    assert normalize_uuid(value) == "6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a10"


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid",
        "6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a1",  # one digit short
        "6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a100",  # one digit long
        "6f1c1a2e-6a43-4a8e-9d0b-8d6e2f1f9a1g",  # not hex
        "12345",
    ],
)
def test_uuid_invalid(value: str) -> None:
    assert violations_of(check_uuid, "request_id", value) == [
        FieldViolation("request_id", "must be a UUID")
    ]
    assert normalize_uuid(value) is None


@settings(max_examples=300)
@given(u=st.uuids())
def test_any_uuid_is_valid_and_normalizes_to_lower_case(u: uuid.UUID) -> None:
    for form in (str(u), str(u).upper(), u.hex):
        assert violations_of(check_uuid, "f", form) == []
        assert normalize_uuid(form) == str(u)


# --- free text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_required_text_must_not_be_blank(value: str) -> None:
    assert violations_of(check_text, "customer_id", value, max_len=10, required=True) == [
        FieldViolation("customer_id", "required")
    ]


def test_optional_text_may_be_empty() -> None:
    assert violations_of(check_text, "summary", "", max_len=10) == []


def test_text_length_limit_is_inclusive() -> None:
    assert violations_of(check_text, "summary", "x" * 10, max_len=10) == []
    assert violations_of(check_text, "summary", "x" * 11, max_len=10) == [
        FieldViolation("summary", "must be at most 10 characters")
    ]


def test_text_length_counts_characters_not_bytes() -> None:
    assert violations_of(check_text, "summary", "é" * 10, max_len=10) == []


@pytest.mark.parametrize("char", ["\t", "\n", "\r", "é", "€", "😀", "\u00a0"])
def test_text_allows_tab_newlines_and_unicode(char: str) -> None:
    assert violations_of(check_text, "notes", f"line one{char}line two", max_len=100) == []


C0_REFUSED = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\x7f"]


@pytest.mark.parametrize("char", C0_REFUSED, ids=lambda c: f"U+{ord(c):04X}")
def test_text_refuses_control_characters(char: str) -> None:
    assert violations_of(check_text, "summary", f"a{char}b", max_len=100) == [
        FieldViolation("summary", "must not contain control characters")
    ]


def test_text_refuses_c1_control_characters() -> None:
    # Regression: CONTROL once covered only C0 and DEL, so the C1 controls U+0080-U+009F
    # passed, among them U+009B, the one-byte CSI that starts terminal escape sequences in
    # agents' consoles and ops' log viewers.
    for char in ("\x9b", "\x80", "\x9f"):
        assert violations_of(check_text, "summary", f"a{char}2Jb", max_len=100) == [
            FieldViolation("summary", "must not contain control characters")
        ], f"U+{ord(char):04X}"


def test_text_reports_one_violation_per_field() -> None:
    assert fields_of(check_text, "summary", "\x00" * 20, max_len=10) == ["summary"]


@settings(max_examples=500)
@given(value=st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30))
def test_ascii_text_matches_reference(value: str) -> None:
    control = any((ord(c) < 0x20 and c not in "\t\n\r") or c == "\x7f" for c in value)
    expected = len(value) <= 20 and not control
    assert (violations_of(check_text, "f", value, max_len=20) == []) == expected


# --- languages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["en", "de", "fil", "pt-br", "de-ch", "zh-hant-tw", "EN", "Pt-BR", " en ", "en-x-y"]
)
def test_language_valid(value: str) -> None:
    assert violations_of(check_language, "language", value) == []


@pytest.mark.parametrize(
    "value",
    [
        "",
        "e",
        "engl",
        "en-",
        "en_us",
        "en-us-a-b-c",  # four subtags after the language
        "en-abcdefghi",  # subtag of nine characters
        "1n",
        "en us",
        "en-ü",
        " " * 30 + "en" + " " * 4,  # more than 35 characters before normalization
    ],
)
def test_language_invalid(value: str) -> None:
    assert violations_of(check_language, "language", value) == [
        FieldViolation("language", 'must be a BCP 47 language tag such as "en" or "pt-br"')
    ]


def test_normalize_language() -> None:
    assert normalize_language(" PT-BR ") == "pt-br"
    assert normalize_language("en") == "en"


def test_languages_paths_and_limit() -> None:
    assert fields_of(check_languages, "agent.languages", ["en", "x", "de", "??"]) == [
        "agent.languages[1]",
        "agent.languages[3]",
    ]
    assert fields_of(check_languages, "agent.languages", ["en"] * MAX_LANGUAGES) == []
    assert violations_of(check_languages, "agent.languages", ["x!"] * (MAX_LANGUAGES + 1)) == [
        FieldViolation("agent.languages", f"must list at most {MAX_LANGUAGES} languages")
    ]


# --- proficiency and capacity -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"), [(0, False), (1, True), (3, True), (5, True), (6, False), (-1, False)]
)
def test_proficiency_range(value: int, ok: bool) -> None:
    expected = [] if ok else [FieldViolation("p", "must be between 1 and 5")]
    assert violations_of(check_proficiency, "p", value) == expected


@pytest.mark.parametrize(
    ("value", "ok"), [(0, False), (1, True), (20, True), (21, False), (-3, False)]
)
def test_capacity_range(value: int, ok: bool) -> None:
    expected = [] if ok else [FieldViolation("agent.capacity", "must be between 1 and 20")]
    assert violations_of(check_capacity, "agent.capacity", value) == expected


# --- skill requirements -------------------------------------------------------------------------


def reqs(*pairs: tuple[str, int]) -> list[SkillRequirement]:
    return [SkillRequirement(s, p) for s, p in pairs]


def test_skill_requirements_valid() -> None:
    assert violations_of(check_skill_requirements, "required_skills", []) == []
    assert (
        violations_of(
            check_skill_requirements, "required_skills", reqs(("billing", 1), ("fraud", 5))
        )
        == []
    )


def test_skill_requirements_report_each_bad_item_with_its_path() -> None:
    found = violations_of(
        check_skill_requirements,
        "required_skills",
        reqs(("billing", 3), ("fraud", 9), ("Bad Name", 0), ("billing", 2)),
    )
    assert [fv.field for fv in found] == [
        "required_skills[1].min_proficiency",
        "required_skills[2].skill",
        "required_skills[2].min_proficiency",
        "required_skills[3].skill",
    ]
    assert found[-1].description == "skill 'billing' is listed twice"


def test_skill_requirements_empty_name_is_required() -> None:
    assert violations_of(check_skill_requirements, "required_skills", reqs(("", 1))) == [
        FieldViolation("required_skills[0].skill", "required")
    ]


def test_skill_requirements_count_limit() -> None:
    many = reqs(*[(f"s{i}", 1) for i in range(MAX_REQUIRED_SKILLS)])
    assert violations_of(check_skill_requirements, "required_skills", many) == []
    too_many = reqs(*[(f"s{i}", 9) for i in range(MAX_REQUIRED_SKILLS + 1)])
    # Over the limit: one violation for the list, items are not inspected.
    assert violations_of(check_skill_requirements, "required_skills", too_many) == [
        FieldViolation("required_skills", f"must list at most {MAX_REQUIRED_SKILLS} skills")
    ]


# --- agent skills and profile -------------------------------------------------------------------


def test_agent_skills_valid() -> None:
    assert violations_of(check_agent_skills, "agent.skills", []) == []
    assert violations_of(check_agent_skills, "agent.skills", [("billing", 1), ("fraud", 5)]) == []


def test_agent_skills_paths_follow_the_request_order() -> None:
    skills = [("billing", 3), ("Fraud", 2), ("tech", 0), ("", 6), ("billing", 4)]
    assert violations_of(check_agent_skills, "agent.skills", skills) == [
        FieldViolation(
            "agent.skills[1].skill",
            "must be 1-64 characters of a-z, 0-9, '_', '-' and '.', starting with a letter "
            "or digit",
        ),
        FieldViolation("agent.skills[2].proficiency", "must be between 1 and 5"),
        FieldViolation("agent.skills[3].skill", "required"),
        FieldViolation("agent.skills[3].proficiency", "must be between 1 and 5"),
        FieldViolation("agent.skills[4].skill", "skill 'billing' is listed twice"),
    ]


def test_agent_skills_after_a_duplicate_keep_their_own_index() -> None:
    skills = [("billing", 3), ("billing", 3), ("Bad", 3)]
    assert fields_of(check_agent_skills, "agent.skills", skills) == [
        "agent.skills[1].skill",
        "agent.skills[2].skill",
    ]


def test_agent_skills_count_limit() -> None:
    ok = [(f"s{i}", 1) for i in range(MAX_AGENT_SKILLS)]
    assert violations_of(check_agent_skills, "agent.skills", ok) == []
    too_many = [(f"s{i}", 0) for i in range(MAX_AGENT_SKILLS + 1)]
    # Over the limit: one violation for the list, items are not inspected.
    assert violations_of(check_agent_skills, "agent.skills", too_many) == [
        FieldViolation("agent.skills", f"must list at most {MAX_AGENT_SKILLS} skills")
    ]


def test_display_name_limit() -> None:
    assert violations_of(check_text, "agent.display_name", "x" * 100, max_len=100) == []
    assert fields_of(check_text, "agent.display_name", "x" * 101, max_len=100) == [
        "agent.display_name"
    ]


# --- handoff request ----------------------------------------------------------------------------


def test_valid_handoff_request() -> None:
    assert violations_of(check_handoff_request, request(skills={"billing": 3}, language="en")) == []


def test_handoff_request_reports_every_violation_at_once() -> None:
    bad = request(
        request_id="nope",
        conversation_id="c" * 129,
        customer_id=" ",
        interaction_type="Billing Dispute",
        skills=[("billing", 3), ("billing", 0)],
        language="english",
        summary="x" * 4001,
    )
    assert fields_of(check_handoff_request, bad) == [
        "request_id",
        "conversation_id",
        "customer_id",
        "interaction_type",
        "required_skills[1].min_proficiency",
        "required_skills[1].skill",
        "language",
        "summary",
    ]


def test_handoff_request_required_fields() -> None:
    empty = request(request_id="", conversation_id="", customer_id="", interaction_type="")
    assert violations_of(check_handoff_request, empty) == [
        FieldViolation("request_id", "required"),
        FieldViolation("conversation_id", "required"),
        FieldViolation("customer_id", "required"),
        FieldViolation("interaction_type", "required"),
    ]


def test_handoff_request_limits_are_inclusive() -> None:
    at_limit = request(conversation_id="c" * 128, customer_id="k" * 128, summary="s" * 4000)
    assert violations_of(check_handoff_request, at_limit) == []
    over = request(conversation_id="c" * 128, customer_id="k" * 129, summary="s" * 4000)
    assert fields_of(check_handoff_request, over) == ["customer_id"]


def test_handoff_request_without_language_skips_the_check() -> None:
    assert violations_of(check_handoff_request, request(language=None)) == []


def test_handoff_request_summary_control_characters() -> None:
    assert fields_of(check_handoff_request, request(summary="hi\x07")) == ["summary"]
    assert fields_of(check_handoff_request, request(summary="hi\nthere\ttab")) == []


# --- completion ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["", "REFUND", "refund/partial", "A-1_b.c/d", "x" * 64])
def test_disposition_code_valid(code: str) -> None:
    assert violations_of(check_completion, code, "notes") == []


@pytest.mark.parametrize("code", ["x" * 65, "has space", "semi;colon", "ümlaut", "a\nb"])
def test_disposition_code_invalid(code: str) -> None:
    assert fields_of(check_completion, code, "") == ["disposition_code"]


def test_completion_notes_limit_and_controls() -> None:
    assert violations_of(check_completion, "OK", "n" * 4000) == []
    assert fields_of(check_completion, "OK", "n" * 4001) == ["notes"]
    assert fields_of(check_completion, "bad code", "\x00") == ["disposition_code", "notes"]
