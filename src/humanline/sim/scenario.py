"""A simulation scenario: who asks for humans, who answers, and how, read from a TOML file.

A scenario names interaction types (Poisson arrivals, an urgency mix, required skills, how long
a human needs, how long a customer waits before leaving, how often the issue is resolved and
how its customers rate the interaction afterwards) and groups of gig agents (skills,
languages, capacity, how fast and how willingly they answer offers, how long they stay logged
in and away). Times are seconds; every random quantity is a `Distribution`, written either as
a plain number (always that value) or as a table such as `{ exponential = 20 }`.

Pure: no gRPC here; the simulator plays a scenario against a running server.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from humanline.sim.report import Drop

UrgencyName = Literal["LOW", "NORMAL", "HIGH", "CRITICAL"]
_NORMAL: UrgencyName = "NORMAL"
ReasonName = Literal[
    "CUSTOMER_REQUEST",
    "LOW_CONFIDENCE",
    "POLICY_EXCEPTION",
    "TOOL_FAILURE",
    "REPEATED_CONTACT",
    "OTHER",
]
DEFAULT_SCENARIO = "default.toml"  # beside this module


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not describe a valid run; the message names
    the file and every problem with its place in the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- random quantities ---------------------------------------------------------------------


class Constant(_Strict):
    """Always `constant`."""

    constant: float = Field(ge=0)

    @property
    def mean(self) -> float:
        return self.constant

    def sample(self, rng: random.Random) -> float:
        return self.constant


class Exponential(_Strict):
    """Memoryless, with the given mean (Poisson arrivals, M/M/c service)."""

    exponential: float = Field(gt=0, description="the mean")

    @property
    def mean(self) -> float:
        return self.exponential

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.exponential)


class Uniform(_Strict):
    """Anywhere between `uniform[0]` and `uniform[1]`."""

    uniform: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        low, high = self.uniform
        if not 0 <= low <= high:
            raise ValueError("uniform needs 0 <= low <= high")
        return self

    @property
    def mean(self) -> float:
        return sum(self.uniform) / 2

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(*self.uniform)


class LogNormal(_Strict):
    """Right-skewed, as handle times are: `lognormal` is the mean, `sigma` the spread of the
    underlying normal."""

    lognormal: float = Field(gt=0, description="the mean")
    sigma: float = Field(0.5, gt=0, le=3)

    @property
    def mean(self) -> float:
        return self.lognormal

    def sample(self, rng: random.Random) -> float:
        mu = math.log(self.lognormal) - self.sigma**2 / 2
        return rng.lognormvariate(mu, self.sigma)


_KINDS = {
    "constant": Constant,
    "exponential": Exponential,
    "uniform": Uniform,
    "lognormal": LogNormal,
}


def _kind(value: object) -> str | None:
    """Which distribution a table describes: the one whose name is among its keys."""
    if isinstance(value, dict):
        return next((kind for kind in _KINDS if kind in value), None)
    return next((kind for kind, cls in _KINDS.items() if isinstance(value, cls)), None)


def _number_is_constant(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"constant": value}
    return value


Distribution = Annotated[
    Annotated[Constant, Tag("constant")]
    | Annotated[Exponential, Tag("exponential")]
    | Annotated[Uniform, Tag("uniform")]
    | Annotated[LogNormal, Tag("lognormal")],
    Discriminator(
        _kind,
        custom_error_type="distribution",
        custom_error_message="expected a number or one of { constant = x }, "
        "{ exponential = mean }, { uniform = [low, high] }, { lognormal = mean, sigma = s }",
    ),
    BeforeValidator(_number_is_constant),
]


# --- customers' ratings --------------------------------------------------------------------


Weights = tuple[float, float, float, float, float]


def _five(value: object) -> object:
    if isinstance(value, list | tuple) and len(value) != 5:
        raise ValueError(f"needs five weights, of the ratings 1 to 5 (got {len(value)})")
    return value


def _csat_weights(value: Weights) -> Weights:
    if any(w < 0 for w in value) or sum(value) <= 0:
        raise ValueError("CSAT weights (of ratings 1 to 5) must be >= 0, not all zero")
    return value


# Relative weights of the ratings 1, 2, 3, 4 and 5, as `[w1, w2, w3, w4, w5]`.
CsatWeights = Annotated[Weights, BeforeValidator(_five), AfterValidator(_csat_weights)]
# By default a resolved issue is rated 4 or 5 by 85% of its customers (mean 4.3), an
# unresolved one by 25% (mean 2.5).
CSAT_RESOLVED: Weights = (2.0, 3.0, 10.0, 35.0, 50.0)
CSAT_UNRESOLVED: Weights = (30.0, 25.0, 20.0, 15.0, 10.0)


def satisfied_share(weights: tuple[float, ...]) -> float:
    """The share of ratings of 4 or 5 that `weights` (of 1 to 5) give."""
    return (weights[3] + weights[4]) / sum(weights)


def draw_csat(u: float, weights: tuple[float, ...]) -> int:
    """The rating 1 to 5 at `u` (uniform in [0, 1)) of the distribution `weights`: the
    inverse of its distribution function, so that one draw of a customer's gives a like
    rating (as high or as low in its distribution) whichever weights apply."""
    total, running = sum(weights), 0.0
    for rating, weight in enumerate(weights, start=1):
        running += weight
        if weight > 0 and u * total < running:
            return rating
    return max(r for r, w in enumerate(weights, start=1) if w > 0)  # u * total rounded up


@dataclass(frozen=True, slots=True)
class Rating:
    """What one customer reports through the bot after an interaction: a CSAT rating, and
    whether they contacted again; `delay` seconds after its completion."""

    csat: int
    contacted_again: bool
    delay: float


# --- the scenario --------------------------------------------------------------------------


class InteractionType(_Strict):
    """One kind of handoff the bots send."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    per_minute: float = Field(gt=0, description="mean arrivals per minute (Poisson)")
    urgency: dict[UrgencyName, float] = Field(
        default_factory=lambda: {_NORMAL: 1.0}, description="relative weights"
    )
    skills: dict[str, Annotated[int, Field(ge=1, le=5)]] = Field(
        default_factory=dict, description="required skill -> minimum proficiency"
    )
    language: str = ""
    reason: ReasonName = "LOW_CONFIDENCE"
    handle: Distribution = Field(description="seconds an agent needs once it has accepted")
    patience: Distribution | None = Field(
        None, description="seconds a customer waits for an agent before leaving; none: forever"
    )
    resolve: float = Field(
        0.9, ge=0, le=1, description="share of these interactions an agent resolves"
    )
    rate: float = Field(
        0.6, ge=0, le=1, description="share of customers who rate the interaction afterwards"
    )
    rate_delay: Distribution = Field(
        default_factory=lambda: Uniform(uniform=(1.0, 5.0)),
        description="seconds from completion to the customer's rating",
    )
    csat_resolved: CsatWeights = Field(
        CSAT_RESOLVED, description="weights of the ratings 1 to 5 when the issue was resolved"
    )
    csat_unresolved: CsatWeights = Field(
        CSAT_UNRESOLVED, description="weights of the ratings 1 to 5 when it was not"
    )
    contacted_again_resolved: float = Field(
        0.05, ge=0, le=1, description="share of rating customers who contacted again, resolved"
    )
    contacted_again_unresolved: float = Field(0.6, ge=0, le=1, description="the same, not resolved")

    @model_validator(mode="after")
    def _weights(self) -> InteractionType:
        if not self.urgency or any(w < 0 for w in self.urgency.values()):
            raise ValueError("urgency needs at least one weight, none negative")
        if sum(self.urgency.values()) <= 0:
            raise ValueError("urgency weights must not all be zero")
        return self


class AgentGroup(_Strict):
    """Gig agents alike in skills and habits."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")
    count: int = Field(ge=1, le=100_000)
    skills: dict[str, Annotated[int, Field(ge=1, le=5)]] = Field(min_length=1)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    capacity: int = Field(1, ge=1, le=10)
    accept_delay: Distribution = Field(
        default_factory=lambda: Constant(constant=1.0),
        description="seconds before answering an offer",
    )
    decline: float = Field(0.0, ge=0, le=1, description="share of offers declined")
    miss: float = Field(0.0, ge=0, le=1, description="share of offers left to expire")
    handle_factor: float = Field(1.0, gt=0, description="multiplies the types' handle times")
    online: Distribution | None = Field(
        None, description="seconds logged in before logging out; none: stays for the run"
    )
    offline: Distribution = Field(
        default_factory=lambda: Exponential(exponential=60.0),
        description="seconds logged out before logging in again",
    )
    online_at_start: float = Field(1.0, ge=0, le=1, description="share logged in at the start")

    @model_validator(mode="after")
    def _answers(self) -> AgentGroup:
        if self.decline + self.miss > 1:
            raise ValueError("decline + miss must not exceed 1")
        return self


class Change(_Strict):
    """From `at` seconds into the run, interactions of a type (taken by one agent group, or
    by any) are resolved at another rate, or rated otherwise by their customers (the
    weights of the ratings 1 to 5 when resolved, when not): a quality drop to be caught.
    What a change leaves unset stays as it was."""

    at: float = Field(ge=0, description="seconds after the first arrival")
    interaction_type: str
    group: str | None = Field(None, description="only this agent group's; none: every group's")
    resolve: float | None = Field(None, ge=0, le=1)
    csat_resolved: CsatWeights | None = None
    csat_unresolved: CsatWeights | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Change:
        if self.resolve is None and self.csat_resolved is None and self.csat_unresolved is None:
            raise ValueError("a change needs resolve, csat_resolved or csat_unresolved")
        return self


class Run(_Strict):
    """How long, and the random seed."""

    duration: float = Field(60.0, gt=0, le=86_400, description="seconds of arrivals")
    drain: float = Field(
        30.0, ge=0, le=3_600, description="seconds to let the last handoffs finish"
    )
    seed: int = 1


class Scenario(_Strict):
    """A whole simulation."""

    name: str = "scenario"
    description: str = ""
    run: Run = Field(default_factory=Run)
    types: list[InteractionType] = Field(min_length=1)
    agents: list[AgentGroup] = Field(min_length=1)
    changes: list[Change] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [t.name for t in self.types]
        if len(set(names)) != len(names):
            raise ValueError("interaction type names must be unique")
        groups = [g.name for g in self.agents]
        if len(set(groups)) != len(groups):
            raise ValueError("agent group names must be unique")
        for t in self.types:
            if not any(_can_take(g, t) for g in self.agents):
                raise ValueError(f"no agent group can take interaction type {t.name!r}")
        for change in self.changes:
            if change.interaction_type not in names:
                raise ValueError(f"a change names unknown type {change.interaction_type!r}")
            if change.group is not None and change.group not in groups:
                raise ValueError(f"a change names unknown agent group {change.group!r}")
        return self

    def drops(self) -> list[Drop]:
        """Each change as `report.detections` takes it: the type, when, and its resolution
        rate and expected CSAT score (the share of ratings of 4 or 5) just before and from
        then on, for the change's agent group (or any group, for a change of every group's)."""
        found = []
        for c in self.changes:
            group = c.group or ""  # no group has that name: only every group's changes apply
            before = math.nextafter(c.at, -math.inf)
            found.append(
                Drop(
                    c.interaction_type,
                    c.at,
                    self.resolve_rate(c.interaction_type, group, before),
                    self.resolve_rate(c.interaction_type, group, c.at),
                    self.expected_satisfied(c.interaction_type, group, before),
                    self.expected_satisfied(c.interaction_type, group, c.at),
                )
            )
        return found

    def _latest(self, interaction_type: str, group: str, elapsed: float) -> list[Change]:
        """The changes that apply to a type's interactions by a group by `elapsed`, in the
        order they came."""
        return [
            change
            for change in sorted(self.changes, key=lambda c: c.at)
            if change.at <= elapsed
            and change.interaction_type == interaction_type
            and change.group in (None, group)
        ]

    def resolve_rate(self, interaction_type: str, group: str, elapsed: float) -> float:
        """The share resolved of a type's interactions by a group, `elapsed` seconds into the
        run: the type's, or the latest change's that applies by then."""
        rate = next((t.resolve for t in self.types if t.name == interaction_type), 1.0)
        for change in self._latest(interaction_type, group, elapsed):
            if change.resolve is not None:
                rate = change.resolve
        return rate

    def csat_weights(
        self, interaction_type: str, group: str, elapsed: float, resolved: bool
    ) -> tuple[float, ...]:
        """The weights of the ratings 1 to 5 of a type's interactions by a group, resolved or
        not, `elapsed` seconds into the run: the type's, or the latest change's by then."""
        kind = self._type(interaction_type)
        weights: tuple[float, ...] = kind.csat_resolved if resolved else kind.csat_unresolved
        for change in self._latest(interaction_type, group, elapsed):
            changed = change.csat_resolved if resolved else change.csat_unresolved
            if changed is not None:
                weights = changed
        return weights

    def expected_satisfied(self, interaction_type: str, group: str, elapsed: float) -> float:
        """The expected share of ratings of 4 or 5 of a type's interactions by a group,
        `elapsed` seconds into the run, resolved and unresolved ones together."""
        resolved = self.resolve_rate(interaction_type, group, elapsed)
        return resolved * satisfied_share(
            self.csat_weights(interaction_type, group, elapsed, True)
        ) + (1 - resolved) * satisfied_share(
            self.csat_weights(interaction_type, group, elapsed, False)
        )

    def rating(
        self,
        customer: random.Random,
        interaction_type: str,
        group: str,
        elapsed: float,
        resolved: bool,
    ) -> Rating | None:
        """What a customer makes of an interaction completed `elapsed` seconds into the run
        by an agent of `group`, drawn from the customer's own random stream (None: the
        customer does not rate it). The draws are the same four in every case (whether the
        customer rates, the delay, the rating, contacting again), so that the same customer
        answers alike in every run, resolved or not: a like rating (`draw_csat`)."""
        kind = self._type(interaction_type)
        rates = customer.random() < kind.rate
        delay = kind.rate_delay.sample(customer)
        u, again = customer.random(), customer.random()
        if not rates:
            return None
        weights = self.csat_weights(interaction_type, group, elapsed, resolved)
        share = kind.contacted_again_resolved if resolved else kind.contacted_again_unresolved
        return Rating(draw_csat(u, weights), again < share, delay)

    def _type(self, name: str) -> InteractionType:
        found = next((t for t in self.types if t.name == name), None)
        if found is None:
            raise KeyError(f"no interaction type {name!r} in the scenario")
        return found

    @property
    def agent_count(self) -> int:
        return sum(g.count for g in self.agents)

    def offered_load(self) -> float:
        """Mean number of busy agent slots if every handoff were taken at once (Erlangs):
        arrivals per second times mean handle time, summed over the types."""
        return sum(t.per_minute / 60 * t.handle.mean for t in self.types)


def _can_take(group: AgentGroup, kind: InteractionType) -> bool:
    skills_ok = all(group.skills.get(s, 0) >= level for s, level in kind.skills.items())
    return skills_ok and (not kind.language or kind.language in group.languages)


# --- reading -------------------------------------------------------------------------------


def parse(text: str, source: str = "<scenario>") -> Scenario:
    """A scenario from TOML text; ScenarioError names every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_place(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{source}: {problems}") from None


def with_run(scenario: Scenario, **overrides: float | int | None) -> Scenario:
    """The scenario with some `run` settings replaced (None: keep), validated as in a file."""
    changes = {key: value for key, value in overrides.items() if value is not None}
    data = {**scenario.run.model_dump(), **changes}
    try:
        return scenario.model_copy(update={"run": Run.model_validate(data)})
    except ValidationError as exc:
        problems = "; ".join(f"{_place(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"--{'/--'.join(changes)}: {problems}") from None


def _place(loc: tuple[int | str, ...]) -> str:
    """`types.0.handle.constant` for a location (a distribution's tag, repeated by pydantic
    before its field, is said once)."""
    parts: list[str] = []
    for part in map(str, loc):
        if not parts or parts[-1] != part:
            parts.append(part)
    return ".".join(parts) or "scenario"


def load(path: str | Path | None = None) -> Scenario:
    """The scenario in `path`, or the default one that ships with humanline."""
    if path is None:
        text = resources.files("humanline.sim").joinpath(DEFAULT_SCENARIO).read_text()
        return parse(text, f"(built-in) {DEFAULT_SCENARIO}")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    return parse(text, str(path))
