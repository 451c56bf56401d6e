"""Input rules for everything callers send: identifiers, texts, skills, limits.

Validators record violations (with the request's field paths) into a `Violations` collector
instead of raising at the first problem, so a caller learns about every bad field at once.
Limits are deliberate: they bound storage and the cost of matching per request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

from humanline.domain.errors import Violations
from humanline.domain.model import Feedback, HandoffRequest, SkillRequirement

IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8}){0,3}")
DISPOSITION = re.compile(r"[A-Za-z0-9_./\-]{0,64}")
# C0 and C1 controls and DEL (U+009B starts terminal escapes); tab, LF, CR and NEL stay.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")

MAX_EXTERNAL_ID = 128
MAX_SUMMARY = 4000
MAX_NOTES = 4000
MAX_DISPLAY_NAME = 100
MAX_COMMAND_ID = 64
MAX_REQUIRED_SKILLS = 20
MAX_AGENT_SKILLS = 50
MAX_LANGUAGES = 20
MIN_PROFICIENCY, MAX_PROFICIENCY = 1, 5
MIN_CAPACITY, MAX_CAPACITY = 1, 20
MIN_CSAT, MAX_CSAT = 1, 5
MAX_REASON_TAGS = 20


def normalize_language(tag: str) -> str:
    """BCP 47 tags compare case-insensitively; the store keeps them lower case."""
    return tag.strip().lower()


def normalize_uuid(value: str) -> str | None:
    """The canonical lower-case form of a UUID, or None if `value` is not one."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def check_identifier(v: Violations, field: str, value: str) -> None:
    """Agent ids, skills and interaction types share one shape."""
    if not value:
        v.add(field, "required")
    elif not IDENTIFIER.fullmatch(value):
        v.add(
            field,
            "must be 1-64 characters of a-z, 0-9, '_', '-' and '.', starting with a letter "
            "or digit",
        )


def check_uuid(v: Violations, field: str, value: str) -> None:
    """A required UUID."""
    if not value:
        v.add(field, "required")
    elif normalize_uuid(value) is None:
        v.add(field, "must be a UUID")


def check_text(
    v: Violations, field: str, value: str, *, max_len: int, required: bool = False
) -> None:
    """Free text: bounded, and without control characters other than tab and newlines."""
    if required and not value.strip():
        v.add(field, "required")
    elif len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")
    elif CONTROL.search(value):
        v.add(field, "must not contain control characters")


def check_language(v: Violations, field: str, value: str) -> None:
    """A BCP 47 language tag such as "en" or "pt-br"."""
    if len(value) > 35 or not LANGUAGE.fullmatch(normalize_language(value)):
        v.add(field, 'must be a BCP 47 language tag such as "en" or "pt-br"')


def check_proficiency(v: Violations, field: str, value: int) -> None:
    """Proficiency runs from 1 (novice) to 5 (expert)."""
    if not MIN_PROFICIENCY <= value <= MAX_PROFICIENCY:
        v.add(field, f"must be between {MIN_PROFICIENCY} and {MAX_PROFICIENCY}")


def check_skill_requirements(
    v: Violations, field: str, requirements: Iterable[SkillRequirement]
) -> None:
    """A handoff's required skills: bounded, each valid and named once."""
    items = list(requirements)
    if len(items) > MAX_REQUIRED_SKILLS:
        v.add(field, f"must list at most {MAX_REQUIRED_SKILLS} skills")
        return
    seen: set[str] = set()
    for i, req in enumerate(items):
        check_identifier(v, f"{field}[{i}].skill", req.skill)
        check_proficiency(v, f"{field}[{i}].min_proficiency", req.min_proficiency)
        if req.skill in seen:
            v.add(f"{field}[{i}].skill", f"skill {req.skill!r} is listed twice")
        seen.add(req.skill)


def check_handoff_request(v: Violations, req: HandoffRequest) -> None:
    """Everything a bot sends with RequestHandoff."""
    check_uuid(v, "request_id", req.request_id)
    check_text(v, "conversation_id", req.conversation_id, max_len=MAX_EXTERNAL_ID, required=True)
    check_text(v, "customer_id", req.customer_id, max_len=MAX_EXTERNAL_ID, required=True)
    check_identifier(v, "interaction_type", req.interaction_type)
    check_skill_requirements(v, "required_skills", req.required_skills)
    if req.language is not None:
        check_language(v, "language", req.language)
    check_text(v, "summary", req.summary, max_len=MAX_SUMMARY)
    if req.preferred_agent_id is not None:
        check_identifier(v, "preferred_agent_id", req.preferred_agent_id)


def check_completion(v: Violations, disposition_code: str, notes: str) -> None:
    """What an agent sends when it completes an interaction (the outcome is an enum)."""
    if not DISPOSITION.fullmatch(disposition_code):
        v.add(
            "disposition_code",
            "must be at most 64 characters of letters, digits, '_', '-', '.' and '/'",
        )
    check_text(v, "notes", notes, max_len=MAX_NOTES)


def check_feedback(v: Violations, feedback: Feedback) -> None:
    """What a bot reports of a customer's rating."""
    if not MIN_CSAT <= feedback.csat <= MAX_CSAT:
        v.add("csat", f"must be between {MIN_CSAT} and {MAX_CSAT}")
    if len(feedback.reason_tags) > MAX_REASON_TAGS:
        v.add("reason_tags", f"must list at most {MAX_REASON_TAGS} tags")
    seen: set[str] = set()
    for i, tag in enumerate(feedback.reason_tags[:MAX_REASON_TAGS]):
        check_identifier(v, f"reason_tags[{i}]", tag)
        if tag in seen:
            v.add(f"reason_tags[{i}]", f"tag {tag!r} is listed twice")
        seen.add(tag)


def check_agent_skills(v: Violations, field: str, skills: Sequence[tuple[str, int]]) -> None:
    """An agent's skills as the request lists them: bounded, each valid and named once."""
    if len(skills) > MAX_AGENT_SKILLS:
        v.add(field, f"must list at most {MAX_AGENT_SKILLS} skills")
        return
    seen: set[str] = set()
    for i, (skill, proficiency) in enumerate(skills):
        check_identifier(v, f"{field}[{i}].skill", skill)
        check_proficiency(v, f"{field}[{i}].proficiency", proficiency)
        if skill in seen:
            v.add(f"{field}[{i}].skill", f"skill {skill!r} is listed twice")
        seen.add(skill)


def check_languages(v: Violations, field: str, languages: Sequence[str]) -> None:
    """An agent's languages as the request lists them: bounded, each a valid tag."""
    items = list(languages)
    if len(items) > MAX_LANGUAGES:
        v.add(field, f"must list at most {MAX_LANGUAGES} languages")
        return
    for i, tag in enumerate(items):
        check_language(v, f"{field}[{i}]", tag)


def check_capacity(v: Violations, field: str, capacity: int) -> None:
    """How many interactions an agent may hold at once."""
    if not MIN_CAPACITY <= capacity <= MAX_CAPACITY:
        v.add(field, f"must be between {MIN_CAPACITY} and {MAX_CAPACITY}")


def check_signals(
    v: Violations,
    field: str,
    *,
    sentiment: float | None,
    disputed_amount: float | None,
    tenure_days: int | None,
    bot_confidence: float | None,
) -> None:
    """The bot's risk signals: each in its range, and a number (NaN is none)."""
    ranges = {
        "sentiment": (sentiment, -1.0, 1.0),
        "bot_confidence": (bot_confidence, 0.0, 1.0),
        "disputed_amount": (disputed_amount, 0.0, 1e12),
    }
    for name, (value, low, high) in ranges.items():
        if value is not None and not low <= value <= high:  # NaN fails both comparisons
            v.add(f"{field}.{name}", f"must be between {low:g} and {high:g}")
    if tenure_days is not None and not 0 <= tenure_days <= 100 * 366:
        v.add(f"{field}.tenure_days", "must be between 0 and 36600")
