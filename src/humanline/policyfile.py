"""The routing policy file (`HUMANLINE_ROUTING_POLICIES`): TOML, read once at start.

```toml
[[policies]]
interaction_type = "fraud"          # or "default": the policy of every type without one
target_seconds = 30                 # time-to-agent target at NORMAL urgency
required_skills = { fraud = 4 }     # when the bot names none
min_proficiency = 4                 # floor for every required skill
risk_class = "high"                 # low, medium, high
offer_timeout_seconds = 10
max_wait_seconds = 300              # then the handoff expires
quality_ranking = true
known_agent_wait_seconds = 0
agent_order = "most_proficient"     # or "least_expert": routine work, experts kept free
expert_level = 5                    # agents whose best skill is 5+ are kept back (0: none)...
expert_delay_seconds = 60           # ...until the handoff has waited this long
relaxation = [
    { after_seconds = 60, min_proficiency = 3 },
    { after_seconds = 120, drop_optional = true },
]
```

A policy in the file replaces the built-in one of its type; a field it leaves out keeps the
built-in policy's value (the fallback's, for a type with no built-in policy). A file with any
problem is refused as a whole, with every problem and its place in one message, and the server
does not start.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from humanline.domain.model import AgentOrder, RiskClass, SkillRequirement
from humanline.domain.routing import (
    BUILT_IN_POLICIES,
    DEFAULT_FALLBACK,
    RelaxationStep,
    RoutingPolicy,
)
from humanline.domain.validation import IDENTIFIER


class PolicyFileError(ValueError):
    """A policy file that cannot be read or holds an invalid policy; the message names the
    file and every problem with its place."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Step(_Strict):
    after_seconds: float = Field(gt=0)
    min_proficiency: int | None = Field(None, ge=1, le=5)
    drop_optional: bool = False


class _Policy(_Strict):
    interaction_type: str = Field(pattern=f"^{IDENTIFIER.pattern}$")
    target_seconds: float | None = Field(None, gt=0)
    required_skills: dict[str, int] | None = None
    min_proficiency: int | None = Field(None, ge=1, le=5)
    risk_class: Literal["low", "medium", "high"] | None = None
    offer_timeout_seconds: float | None = Field(None, gt=0)
    max_wait_seconds: float | None = Field(None, gt=0)
    quality_ranking: bool | None = None
    known_agent_wait_seconds: float | None = Field(None, ge=0)
    agent_order: Literal["most_proficient", "least_expert"] | None = None
    expert_level: int | None = Field(None, ge=0, le=5)
    expert_delay_seconds: float | None = Field(None, gt=0)
    relaxation: list[_Step] | None = Field(None, max_length=10)


class _File(_Strict):
    policies: list[_Policy] = Field(default_factory=list, max_length=1000)


def _policy(entry: _Policy) -> RoutingPolicy:
    base = BUILT_IN_POLICIES.get(entry.interaction_type, DEFAULT_FALLBACK)
    policy = replace(base, interaction_type=entry.interaction_type)
    changes: dict[str, object] = {}
    if entry.target_seconds is not None:
        changes["target"] = timedelta(seconds=entry.target_seconds)
    if entry.required_skills is not None:
        changes["required_skills"] = tuple(
            SkillRequirement(skill, level) for skill, level in entry.required_skills.items()
        )
    if entry.min_proficiency is not None:
        changes["min_proficiency"] = entry.min_proficiency
    if entry.risk_class is not None:
        changes["risk_class"] = RiskClass(entry.risk_class)
    if entry.offer_timeout_seconds is not None:
        changes["offer_timeout"] = timedelta(seconds=entry.offer_timeout_seconds)
    if entry.max_wait_seconds is not None:
        changes["max_wait"] = timedelta(seconds=entry.max_wait_seconds)
    if entry.quality_ranking is not None:
        changes["quality_ranking"] = entry.quality_ranking
    if entry.known_agent_wait_seconds is not None:
        changes["known_agent_wait"] = timedelta(seconds=entry.known_agent_wait_seconds)
    if entry.agent_order is not None:
        changes["agent_order"] = AgentOrder(entry.agent_order.upper())
    if entry.expert_level == 0:  # no expert kept back
        changes.update(expert_level=None, expert_delay=timedelta(0))
    elif entry.expert_level is not None:
        changes["expert_level"] = entry.expert_level
    if entry.expert_delay_seconds is not None:
        changes["expert_delay"] = timedelta(seconds=entry.expert_delay_seconds)
    if entry.relaxation is not None:
        changes["relaxation"] = tuple(
            RelaxationStep(timedelta(seconds=s.after_seconds), s.min_proficiency, s.drop_optional)
            for s in entry.relaxation
        )
    return replace(policy, **changes)  # type: ignore[arg-type]


_FIELD_OF = {
    "target": "target_seconds",
    "offer_timeout": "offer_timeout_seconds",
    "max_wait": "max_wait_seconds",
    "known_agent_wait": "known_agent_wait_seconds",
    "expert_delay": "expert_delay_seconds",
}


def _file_field(field: str) -> str:
    """The file's name for a policy field (`max_wait` -> `max_wait_seconds`,
    `relaxation[1].after` -> `relaxation.1.after_seconds`)."""
    if field.startswith("relaxation["):
        index, _, rest = field[len("relaxation[") :].partition("]")
        rest = rest.lstrip(".")
        rest = "after_seconds" if rest == "after" else rest
        return f"relaxation.{index}" + (f".{rest}" if rest else "")
    return _FIELD_OF.get(field, field)


def parse(text: str, source: str) -> list[RoutingPolicy]:
    """The policies a policy file's text describes; PolicyFileError naming every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{source}: not valid TOML: {exc}") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        found = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PolicyFileError(f"{source}: {found}") from None
    problems: list[str] = []
    policies: list[RoutingPolicy] = []
    seen: set[str] = set()
    for i, entry in enumerate(parsed.policies):
        place = f"policies.{i}"
        if entry.interaction_type in seen:
            problems.append(f"{place}.interaction_type: {entry.interaction_type!r} comes twice")
        seen.add(entry.interaction_type)
        for skill in entry.required_skills or {}:
            if not IDENTIFIER.fullmatch(skill):
                problems.append(f"{place}.required_skills.{skill}: not a skill name")
        for skill, level in (entry.required_skills or {}).items():
            if not 1 <= level <= 5:
                problems.append(f"{place}.required_skills.{skill}: must be between 1 and 5")
        policy = _policy(entry)
        problems.extend(
            f"{place}.{_file_field(field)}: {description}"
            for field, description in policy.problems()
        )
        policies.append(policy)
    if problems:
        raise PolicyFileError(f"{source}: {'; '.join(problems)}")
    return policies


def load(path: str | Path) -> list[RoutingPolicy]:
    """The policies in the file at `path`."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read it: {exc.strerror}") from None
    return parse(text, str(path))
