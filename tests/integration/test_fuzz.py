"""Fuzzing every request message of every RPC over real gRPC, against an in-process server.

Two properties, for every call:
1. the answer is never INTERNAL or UNKNOWN (on the agent stream: no `command_rejected` with
   code INTERNAL or UNKNOWN, and the stream never ends with either);
2. a refused call (any status but OK, or a `command_rejected`) changes nothing stored: every
   table of the server's SQLite file is read before and after the call (through a read-only
   sqlite3 connection of its own) and compared, all but `replicas.heartbeat_at`, which the
   replica's heartbeat rewrites by itself every 2 s.

One generic strategy, `messages`, builds any protobuf message from its descriptor: strings
(realistic and existing ids, odd unicode, NUL, up to 10k characters), integers over the whole
range of their type, floats with NaN and infinities, bytes, enums with numbers nobody defined,
nested messages (depth-limited), repeated fields (0-30 items, or sometimes hundreds), maps,
oneofs, and the well-known types (Timestamp, Duration, FieldMask). Each message is drawn
`tame` (every field from its hint: a valid, often existing value, so that calls reach the
service's depths), `wild` (anything) or `mixed` (field by field). The opaque strings callers
send back are forged too: ListAgents page tokens (base64 of odd or deeply nested JSON) and
`authorization` metadata (JWT-shaped tokens with odd headers and claims).

Each test has a server of its own on a fresh SQLite file, seeded with agents (two online),
sessions, offers, an interaction and handoffs of two bots in every state; its examples run one
after the other on it, so the state that OK calls make carries over, and what exists (agent,
handoff, offer and request ids, resume and page tokens) is read back before every example to
bias the ids drawn. The policy's timers are an hour long, so nothing changes by itself; before
each snapshot the test waits until what earlier calls set off (matching, recording a stream's
drop) is done. Calls are made as the role the RPC is for (ops for PoolService, either bot or
ops for HandoffService, the agent the request names for AgentService); some with a role the
RPC refuses must be PERMISSION_DENIED, some without a valid token UNAUTHENTICATED.

The tests are synchronous and drive the server's event loop through an `asyncio.Runner` (as
tests/integration/test_store_matching.py does), so that Hypothesis runs one test body after
the other against one server. They build their server themselves rather than with
tests/conftest.py's `serve`: for the quiet policy, and to keep this file's imports free of
tests/support/client.py (which mypy does not pass yet).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sqlite3
import string
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import grpc
import pytest
from google.protobuf import message_factory, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from humanline.client.credentials import Minter
from humanline.domain.access import Principal, Role
from humanline.domain.clock import SystemClock
from humanline.domain.rules import DispatchPolicy
from humanline.grpc.converters import POLICY_FIELDS
from humanline.grpc.server import RunningServer, create_server
from humanline.service.app import Humanline
from humanline.store import create_store
from humanline.tokens import KeyRing
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    handoff_pb2,
    handoff_service_pb2,
    handoff_service_pb2_grpc,
    pool_service_pb2,
    pool_service_pb2_grpc,
)

M = TypeVar("M", bound=Message)
T = TypeVar("T")
F = FieldDescriptor

# --- the generic strategy ------------------------------------------------------------------

Hints = Mapping[str, st.SearchStrategy[Any]]
"""Strategies for `tame` values: of a field, by its full name ("humanline.v1.Agent.capacity")
or plain name ("capacity"), drawing the whole list for a repeated field; of a oneof, by its
full name, drawing the name of the member to set (or None); of a whole message, by the
message type's full name (used for half of the tame messages of that type)."""

TAME, MIXED, WILD = "tame", "mixed", "wild"

INT_RANGES: Final = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}

# Strings that have broken servers before: NUL, bidi and zero-width characters, lookalikes,
# case and normalisation variants, controls, format strings, SQL, paths.
ODD_STRINGS: Final = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t",
    "\r\n",
    "\x1b[2J",
    "\x7f",
    "\x85",
    "\x9b",
    "\u2028",
    "\u202egnp.exe",
    "\ufeff",
    "\u200b",
    "e\u0301",
    "İ",
    "ß",
    "\uff21\uff2e\uff2e",  # fullwidth ANN
    "\U0001d552\U0001d55f\U0001d55f",  # double-struck ann
    "🙂",
    "\U0010ffff",
    "%s%s%n",
    "{0}{}",
    "' OR '1'='1",
    "'; DROP TABLE agents; --",
    "../../etc/passwd",
    "null",
    "None",
    "NaN",
    "-0",
    "1e309",
)

_units = st.sampled_from(["a", "é", "\x00", "\U0001d552", "ab-", "0", " ", "\u202e"])
LONG_STRINGS: Final = st.builds(
    lambda unit, n: (unit * n)[:10_000], _units, st.integers(64, 10_000)
)
IDENTIFIERS: Final = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True)
UUIDS: Final = st.uuids().map(str)


class _Fresh:
    """Numbers for new ids: different at every draw, the same sequence in every test."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._numbers = itertools.count(1)

    def __call__(self) -> int:
        return next(self._numbers)


fresh = _Fresh()
# New ids (Hypothesis, derandomized, would draw the same few again and again).
FRESH_UUIDS: Final = st.builds(lambda: str(uuid.uuid5(uuid.NAMESPACE_OID, str(fresh()))))
FRESH_IDENTIFIERS: Final = st.builds(lambda: f"fz-{fresh()}")
WILD_TEXT: Final = st.text(st.characters(codec="utf-8"), max_size=40)  # no lone surrogates


JSON_VALUES: Final = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _nested(depth: int, arrays: bool) -> str:
    return "[" * depth + "]" * depth if arrays else '{"a":' * depth + "0" + "}" * depth


# JSON nested deeper than parsers like.
NESTED_JSON: Final = st.builds(
    _nested,
    st.sampled_from([1000, 1500, 3000, 100, 2]) | st.integers(1, 3000),
    st.booleans(),
)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _edges(low: int, high: int) -> list[int]:
    points = {low, low + 1, -1, 0, 1, 2, 5, 6, 20, 21, 64, 65, 1000, 1001, high - 1, high}
    return sorted(p for p in points if low <= p <= high)


def messages(
    cls: type[M],
    *,
    hints: Hints | None = None,
    realistic: st.SearchStrategy[str] | None = None,
    depth: int = 3,
) -> st.SearchStrategy[M]:
    """Any message of type `cls`: each example is `tame` (every field set, from its hint or a
    small valid-looking value), `wild` (each field unset or anything its type allows) or
    `mixed` (each field unset, tame or wild). `realistic` strings are mixed into wild ones."""
    builder = _Builder(hints or {}, realistic if realistic is not None else IDENTIFIERS | UUIDS)

    @st.composite
    def draw_message(draw: st.DrawFn) -> M:
        mode = draw(st.sampled_from([TAME, MIXED, TAME, WILD]))
        message = cls()
        builder.fill(draw, message, mode, depth)
        return message

    return draw_message()


class _Builder:
    """Draws field values for `messages`; strategies are made once per field and mode."""

    def __init__(self, hints: Hints, realistic: st.SearchStrategy[str]) -> None:
        self.hints = hints
        self.wild_strings = st.one_of(
            realistic, st.sampled_from(ODD_STRINGS), WILD_TEXT, LONG_STRINGS
        )
        self._cache: dict[tuple[str, str, str, int], st.SearchStrategy[Any]] = {}

    def hint(self, full_name: str, name: str) -> st.SearchStrategy[Any] | None:
        return self.hints.get(full_name, self.hints.get(name))

    def fill(self, draw: st.DrawFn, message: Message, mode: str, depth: int) -> None:
        descriptor: Any = message.DESCRIPTOR
        whole = self.hints.get(descriptor.full_name)
        if whole is not None and mode == TAME and draw(st.booleans()):
            message.MergeFrom(draw(whole))
            return
        for oneof in descriptor.oneofs:
            if _is_optional(oneof):
                continue  # proto3 `optional`: an ordinary field below
            names: list[str | None] = [f.name for f in oneof.fields]
            hint = self.hints.get(oneof.full_name)
            if hint is not None and mode != WILD:
                chosen = draw(hint)
            elif mode == TAME:
                chosen = draw(st.sampled_from(names))
            else:
                chosen = draw(st.sampled_from([None, *names]))
            if chosen is not None:
                member = descriptor.fields_by_name[chosen]
                member_mode = mode if mode != MIXED else draw(st.sampled_from([TAME, WILD]))
                self.assign(message, member, draw(self.value(member, member_mode, depth)))
        for fd in descriptor.fields:
            if fd.containing_oneof is not None and not _is_optional(fd.containing_oneof):
                continue
            field_mode: str | None
            if mode == TAME:
                field_mode = TAME
            elif mode == WILD:
                field_mode = draw(st.sampled_from([None, WILD]))
            else:
                field_mode = draw(st.sampled_from([TAME, None, TAME, WILD]))
            if field_mode is not None:
                self.assign(message, fd, draw(self.value(fd, field_mode, depth)))

    @staticmethod
    def assign(message: Message, fd: FieldDescriptor, value: Any) -> None:
        if _is_map(fd):
            container = getattr(message, fd.name)
            value_field = _entry(fd).fields_by_name["value"]
            for key, item in value.items():
                if value_field.cpp_type == F.CPPTYPE_MESSAGE:
                    container[key].CopyFrom(item)
                else:
                    container[key] = item
        elif fd.is_repeated:
            getattr(message, fd.name).extend(value)
        elif fd.cpp_type == F.CPPTYPE_MESSAGE:
            sub = getattr(message, fd.name)
            sub.SetInParent()
            sub.MergeFrom(value)
        else:
            setattr(message, fd.name, value)

    def value(self, fd: FieldDescriptor, mode: str, depth: int) -> st.SearchStrategy[Any]:
        """The strategy for field `fd`'s whole value (a list for a repeated field, a dict for
        a map)."""
        key = ("field", fd.full_name, mode, depth)
        strategy = self._cache.get(key)
        if strategy is None:
            strategy = self._cache[key] = self._value(fd, mode, depth)
        return strategy

    def _value(self, fd: FieldDescriptor, mode: str, depth: int) -> st.SearchStrategy[Any]:
        hint = self.hint(fd.full_name, fd.name)
        if hint is not None and mode == TAME:
            return hint
        if _is_map(fd):
            entry = _entry(fd)
            keys = self.single(entry.fields_by_name["key"], mode, depth)
            values = self.single(entry.fields_by_name["value"], mode, depth)
            return st.dictionaries(keys, values, max_size=3 if mode == TAME else 30)
        if fd.is_repeated:
            item = self.single(fd, mode, depth)
            if mode == TAME:
                return st.lists(item, max_size=3)
            tame_item = self.single(fd, TAME, depth)
            large = st.builds(
                lambda first, n, tail: [first] * n + tail,
                tame_item,
                st.integers(31, 500),
                st.lists(item, max_size=3),
            )
            return st.one_of(st.lists(item, max_size=30), large)
        return self.single(fd, mode, depth)

    def single(self, fd: FieldDescriptor, mode: str, depth: int) -> st.SearchStrategy[Any]:
        """One value of field `fd`'s type (an item, for a repeated field)."""
        cpp = fd.cpp_type
        if cpp == F.CPPTYPE_MESSAGE:
            return self.nested(_entry(fd), mode, depth - 1)
        if mode == TAME:
            hint = self.hint(fd.full_name, fd.name)
            if hint is not None and not fd.is_repeated:
                return hint
        if cpp == F.CPPTYPE_ENUM:
            enum_type = fd.enum_type
            assert enum_type is not None
            # The specified values first (Hypothesis favours the first), UNSPECIFIED last.
            numbers = sorted((v.number for v in enum_type.values), key=lambda n: (n == 0, n))
            if mode == TAME:
                return st.sampled_from(numbers)
            if enum_type.is_closed:
                return st.sampled_from(numbers)
            return st.sampled_from(numbers) | st.integers(-(2**31), 2**31 - 1)
        if cpp == F.CPPTYPE_STRING:
            if fd.type == F.TYPE_BYTES:
                return st.binary(max_size=8 if mode == TAME else 2048)
            if mode == TAME:
                return st.text(
                    string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12
                )
            return self.wild_strings
        if cpp == F.CPPTYPE_BOOL:
            return st.booleans()
        if cpp in (F.CPPTYPE_FLOAT, F.CPPTYPE_DOUBLE):
            width: Literal[32, 64] = 32 if cpp == F.CPPTYPE_FLOAT else 64
            if mode == TAME:
                return st.floats(0, 10, width=width)
            return st.floats(width=width)
        low, high = INT_RANGES[fd.type]
        if mode == TAME:
            return st.integers(max(low, 0), 5)
        return st.sampled_from(_edges(low, high)) | st.integers(low, high)

    def nested(self, descriptor: Descriptor, mode: str, depth: int) -> st.SearchStrategy[Any]:
        key = ("message", descriptor.full_name, mode, depth)
        strategy = self._cache.get(key)
        if strategy is None:
            cls = _message_class(descriptor)

            @st.composite
            def draw_nested(draw: st.DrawFn) -> Message:
                message = cls()
                if depth >= 0:
                    self.fill(draw, message, mode, depth)
                return message

            strategy = self._cache[key] = draw_nested()
        return strategy


def _is_optional(oneof: Any) -> bool:
    """Whether a oneof is the synthetic one of a proto3 `optional` field."""
    fields = list(oneof.fields)
    return len(fields) == 1 and bool(oneof.name == f"_{fields[0].name}")


def _entry(fd: FieldDescriptor) -> Descriptor:
    """The message type of a message (or map) field."""
    message_type = fd.message_type
    assert message_type is not None, fd.full_name
    return message_type


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.is_repeated and fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


# --- tokens and callers ----------------------------------------------------------------------

Metadata = tuple[tuple[str, str], ...]
BOT, OTHER_BOT = "test-bot", "other-bot"
RIGHT, WRONG_ROLE, UNAUTHENTICATED = "right", "wrong role", "unauthenticated"


class Tokens:
    """Tokens of every caller the tests play."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys
        self._minter = Minter(keys, bot_id=BOT, ops_name="ops")
        foreign = KeyRing.generate()
        long_ago = datetime.now(UTC) - timedelta(days=2)
        self.invalid: list[Metadata] = [
            (),
            (("authorization", "Bearer not-a-token"),),
            (("authorization", "Basic YW5uOnNlY3JldA=="),),
            (("authorization", "Bearer "),),
            _bearer(foreign.issue(Principal(Role.OPS, "ops"))),
            _bearer(keys.issue(Principal(Role.OPS, "ops"), timedelta(hours=1), long_ago)),
        ]
        self.forged = forged_authorizations(keys.signing_key.kid)

    def of(self, role: Role, subject: str) -> Metadata:
        return self._minter.metadata_for(Principal(role, subject))

    def agent(self, agent_id: str) -> Metadata:
        return self._minter.agent(agent_id)

    def agent_or_ann(self, agent_id: str) -> tuple[Metadata, str]:
        """Agent `agent_id`'s token, or ann's when no token can name that id."""
        try:
            return self._minter.agent(agent_id), f"agent:{agent_id}"
        except ValueError:
            return self._minter.agent("ann"), "agent:ann"


def forged_authorizations(kid: str) -> st.SearchStrategy[Metadata]:
    """`authorization` metadata a client made up: JWT-shaped tokens whose header and claims
    are JSON of the right shape with odd values (naming the server's key, too), other JSON or
    deeply nested JSON, with a made-up signature; and plain text."""
    header = st.fixed_dictionaries(
        {
            "alg": st.sampled_from(["EdDSA", "none", "HS256", "RS256"]) | JSON_VALUES,
            "kid": st.just(kid) | JSON_VALUES,
            "typ": st.just("JWT"),
        }
    )
    claims = st.fixed_dictionaries(
        {
            "iss": st.just("humanline") | JSON_VALUES,
            "aud": st.just("humanline") | JSON_VALUES,
            "sub": st.sampled_from(["ops", "ann", BOT]) | JSON_VALUES,
            "role": st.sampled_from(["ops", "bot", "agent", "root"]) | JSON_VALUES,
            "iat": st.integers(0, 2**40) | JSON_VALUES,
            "exp": st.integers(0, 2**40) | JSON_VALUES,
        }
    )

    def part(shaped: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[str]:
        return st.one_of(shaped.map(json.dumps), JSON_VALUES.map(json.dumps), NESTED_JSON)

    signature = st.binary(max_size=64).map(lambda raw: base64.urlsafe_b64encode(raw).decode())
    jwts = st.builds(
        lambda h, c, sig: f"{b64(h)}.{b64(c)}.{sig}".replace("=", ""),
        part(header),
        part(claims),
        signature,
    )
    schemes = st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", "Token "])
    text = st.text(string.ascii_letters + string.digits + "-._~+/= ", max_size=200)
    values = st.builds(str.__add__, schemes, jwts | text) | text
    # Cut to a little over what the server reads at all (4096), well within what gRPC carries
    # (metadata over 8 KiB is refused by the transport, RESOURCE_EXHAUSTED, before any check).
    return values.map(lambda value: (("authorization", value[:4200]),))


def _bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Caller:
    kind: str  # RIGHT, WRONG_ROLE or UNAUTHENTICATED
    metadata: Metadata
    who: str

    def __repr__(self) -> str:
        return f"Caller({self.kind}: {self.who})"


ROLE_SUBJECTS: Final = {Role.OPS: "ops", Role.BOT: BOT, Role.AGENT: "ann"}


def _cut(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def draw_caller(
    data: st.DataObject,
    tokens: Tokens,
    allowed: tuple[Role, ...],
    right: Callable[[], tuple[Metadata, str]],
) -> Caller:
    """Mostly the right caller for the call; sometimes one of a role the RPC refuses, or one
    without a valid token."""
    pick = data.draw(st.integers(0, 11), label="caller")
    if pick <= 8:
        metadata, who = right()
        return Caller(RIGHT, metadata, who)
    if pick <= 10:
        role = data.draw(st.sampled_from([r for r in Role if r not in allowed]), label="role")
        subject = ROLE_SUBJECTS[role]
        return Caller(WRONG_ROLE, tokens.of(role, subject), f"{role.value}:{subject}")
    metadata = data.draw(st.sampled_from(tokens.invalid) | tokens.forged, label="no valid token")
    return Caller(UNAUTHENTICATED, metadata, _cut(f"invalid token {metadata}", 300))


# --- the server and its state --------------------------------------------------------------

# Timers an hour long: nothing expires during a test, so stored state changes only by calls.
QUIET = DispatchPolicy(
    offer_timeout=timedelta(hours=1),
    grace_period=timedelta(hours=1),
    heartbeat_interval=timedelta(hours=1),
)
CALL_TIMEOUT = 10.0
# Columns that change by themselves, with time.
VOLATILE: Final = {("replicas", "heartbeat_at")}
# Written only by the quality monitor in the background, from agent_quality, never by a call
# (the monitor is stopped: see World._start).
DERIVED: Final = {"quality_pool"}

Snapshot = dict[str, list[tuple[Any, ...]]]
ConnectRequest = agent_service_pb2.ConnectRequest
ConnectResponse = agent_service_pb2.ConnectResponse

SKILLS: Final = ("billing", "orders", "general", "fraud", "nobody-has-this")
LANGUAGES: Final = ("en", "de", "fr", "en-us", "EN", "pt-br")
UPDATABLE: Final = ("display_name", "skills", "languages", "capacity")
OPENERS: Final = ("hello", "resume")


@dataclass
class Known:
    """Ids that exist on the server (read back from its store before every example), for the
    strategies to pick from. The lists are changed in place: strategies hold them."""

    agent_ids: list[str] = field(default_factory=list)
    handoff_ids: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    offer_ids: list[str] = field(default_factory=list)
    pending_offer_ids: list[str] = field(default_factory=list)
    holdings: list[tuple[str, str]] = field(default_factory=list)  # (agent, offer) taken
    resume_tokens: list[str] = field(default_factory=list)
    page_tokens: list[str] = field(default_factory=list)

    def refresh(self, db: sqlite3.Connection) -> None:
        self.agent_ids[:] = [r[0] for r in db.execute("SELECT id FROM agents ORDER BY id")]
        rows = db.execute("SELECT id, request_id FROM handoffs ORDER BY created_at").fetchall()
        self.handoff_ids[:] = [r[0] for r in rows]
        self.request_ids[:] = [r[1] for r in rows]
        rows = db.execute("SELECT id, agent_id, state FROM offers ORDER BY created_at").fetchall()
        self.offer_ids[:] = [r[0] for r in rows]
        self.pending_offer_ids[:] = [r[0] for r in rows if r[2] == "PENDING"]
        self.holdings[:] = [(r[1], r[0]) for r in rows if r[2] in ("ACCEPTED", "COMPLETED")]


def _among(items: list[str], fallback: str = "") -> st.SearchStrategy[str]:
    """One of `items` as they are when drawn (`fallback` while empty)."""
    return st.integers(0, 1 << 16).map(lambda i: items[i % len(items)] if items else fallback)


def _uuid_ids(items: list[str]) -> st.SearchStrategy[str]:
    """An existing id, as stored or upper-cased, or some other UUID."""
    known = _among(items, "00000000-0000-4000-8000-000000000000")
    return st.one_of(known, known, known.map(str.upper), UUIDS)


def hints_for(known: Known) -> dict[str, st.SearchStrategy[Any]]:
    """Valid, mostly existing, values for every field the requests have."""
    agent_ids = st.one_of(
        _among(known.agent_ids, "ann"), st.sampled_from(["ann", "bob", "cara", "gone"]), IDENTIFIERS
    )
    skills = st.sampled_from(SKILLS)
    short_text = st.text(string.ascii_letters + string.digits + " .,!?'", max_size=30)
    agent_skills = st.lists(
        st.builds(agent_pb2.AgentSkill, skill=skills, proficiency=st.integers(1, 5)),
        max_size=4,
        unique_by=lambda s: s.skill,
    )
    requirements = st.lists(
        st.builds(handoff_pb2.SkillRequirement, skill=skills, min_proficiency=st.integers(0, 5)),
        max_size=3,
        unique_by=lambda s: s.skill,
    )
    completions = st.builds(
        lambda holding, outcome, code: agent_service_pb2.CompleteInteractionRequest(
            agent_id=holding[0], interaction_id=holding[1], outcome=outcome, disposition_code=code
        ),
        st.integers(0, 1 << 16).map(
            lambda i: known.holdings[i % len(known.holdings)] if known.holdings else ("ann", "")
        ),
        st.sampled_from([handoff_pb2.OUTCOME_RESOLVED, handoff_pb2.OUTCOME_FOLLOW_UP_NEEDED]),
        st.sampled_from(["done", "refund/issued"]),
    )
    return {
        # An agent's own interaction, accepted or completed: completion and its idempotency.
        "humanline.v1.CompleteInteractionRequest": completions,
        "agent_id": agent_ids,
        "humanline.v1.CreateAgentRequest.agent_id": st.one_of(
            FRESH_IDENTIFIERS,
            _among(known.agent_ids, "ann"),
            FRESH_IDENTIFIERS,
            st.just(""),
            FRESH_IDENTIFIERS,
            IDENTIFIERS,
        ),
        "display_name": short_text,
        "humanline.v1.Agent.skills": agent_skills,
        "skill": skills,
        "humanline.v1.ListAgentsRequest.skill": st.sampled_from(["", *SKILLS]),
        "proficiency": st.integers(1, 5),
        "min_proficiency": st.integers(0, 5),
        "languages": st.lists(st.sampled_from(LANGUAGES), max_size=3, unique=True),
        "language": st.sampled_from(["", "en", "de", "fr", "EN"]),
        "capacity": st.integers(1, 20),
        "google.protobuf.FieldMask.paths": st.lists(
            st.sampled_from([*UPDATABLE, *POLICY_FIELDS]), max_size=4, unique=True
        ),
        "page_size": st.integers(0, 1000),
        "page_token": st.one_of(st.just(""), _among(known.page_tokens), forged_page_tokens()),
        "handoff_id": _uuid_ids(known.handoff_ids),
        "request_id": st.one_of(
            FRESH_UUIDS, _among(known.request_ids), FRESH_UUIDS, FRESH_UUIDS, FRESH_UUIDS
        ),
        "conversation_id": st.from_regex(r"conv-[0-9]{1,3}", fullmatch=True),
        "customer_id": st.from_regex(r"cust-[0-9]{1,3}", fullmatch=True),
        "interaction_type": st.sampled_from(
            ["order_lookup", "refund", "billing.question", "fraud", "default"]
        ),
        "required_skills": requirements,
        "summary": short_text,
        "notes": short_text,
        "interaction_id": _uuid_ids(known.offer_ids),
        "offer_id": st.one_of(_among(known.pending_offer_ids), _uuid_ids(known.offer_ids)),
        "disposition_code": st.sampled_from(["done", "", "refund/issued"]),
        "csat": st.one_of(st.integers(1, 5), st.integers(-3, 8), st.integers(-(2**31), 2**31 - 1)),
        "reason_tags": st.lists(
            st.one_of(st.sampled_from(["slow", "kind", "slow"]), IDENTIFIERS), max_size=4
        ),
        "resume_token": st.one_of(_among(known.resume_tokens, "x"), WILD_TEXT),
        "command_id": st.one_of(st.just(""), IDENTIFIERS, UUIDS),
        "google.protobuf.Timestamp.seconds": st.integers(-62_135_596_800, 253_402_300_799),
        "google.protobuf.Timestamp.nanos": st.integers(0, 999_999_999),
        "google.protobuf.Duration.seconds": st.one_of(
            st.integers(1, 4000), st.integers(-315_576_000_000, 315_576_000_000)
        ),
        "google.protobuf.Duration.nanos": st.integers(0, 999_999_999),
    }


def forged_page_tokens() -> st.SearchStrategy[str]:
    """ListAgents page tokens a client made up: base64 of JSON of the right shape with odd
    values, of other JSON, of deeply nested JSON, of text."""
    shaped = st.fixed_dictionaries(
        {
            "after": IDENTIFIERS | JSON_VALUES,
            "state": st.sampled_from([None, "AVAILABLE", "OFFLINE", "BUSY"]) | JSON_VALUES,
            "skill": st.sampled_from([None, *SKILLS]) | JSON_VALUES,
        }
    )
    documents = st.one_of(
        NESTED_JSON, shaped.map(json.dumps), JSON_VALUES.map(json.dumps), WILD_TEXT
    )
    return documents.map(b64)


def realistic_strings(known: Known) -> st.SearchStrategy[str]:
    return st.one_of(
        _among(known.agent_ids, "ann"),
        _among(known.handoff_ids),
        _among(known.offer_ids),
        st.sampled_from(SKILLS),
        IDENTIFIERS,
        UUIDS,
    )


Reply = tuple[grpc.StatusCode, Any]  # the status and the response (OK) or the error


class Stream:
    """One AgentService.Connect call: requests go out from a queue, a task reads the answers
    (cancelling a read on a grpc.aio call would cancel the call)."""

    def __init__(self, stub: Any, metadata: Metadata) -> None:
        self._outbox: asyncio.Queue[ConnectRequest | None] = asyncio.Queue()
        self._inbox: asyncio.Queue[ConnectResponse | Ended] = asyncio.Queue()
        self.call = stub.Connect(self._requests(), metadata=metadata)
        self.ended: Ended | None = None
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[ConnectRequest]:
        while (message := await self._outbox.get()) is not None:
            yield message

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self._inbox.put_nowait(message)
            end = Ended(grpc.StatusCode.OK, "")
        except grpc.aio.AioRpcError as error:
            end = Ended(error.code(), error.details() or "")
        except asyncio.CancelledError:
            end = Ended(grpc.StatusCode.CANCELLED, "cancelled here")
        self._inbox.put_nowait(end)

    def send(self, message: ConnectRequest) -> None:
        self._outbox.put_nowait(message)

    async def next(self, timeout: float = CALL_TIMEOUT) -> ConnectResponse | Ended:
        """The next answer, or how the stream ended (again and again once it has)."""
        if self.ended is not None:
            return self.ended
        async with asyncio.timeout(timeout):
            message = await self._inbox.get()
        if isinstance(message, Ended):
            self.ended = message
        return message

    async def until(self, command_id: str) -> tuple[list[ConnectResponse], Ended | None]:
        """The answers up to and including the one to `command_id`, or to the stream's end."""
        seen: list[ConnectResponse] = []
        while True:
            message = await self.next()
            if isinstance(message, Ended):
                return seen, message
            seen.append(message)
            if message.command_id == command_id:
                return seen, None

    async def close(self, *, cleanly: bool) -> Ended | None:
        """Leaves (half-close: a log-out) and reads to the end, which it returns, or cancels
        (a lost network)."""
        end = None
        if cleanly:
            self._outbox.put_nowait(None)
            while not isinstance(message := await self.next(), Ended):
                pass
            end = message
        else:
            self.call.cancel()
            self._outbox.put_nowait(None)  # ends the request iterator grpc is waiting on
        await asyncio.gather(self._reader, return_exceptions=True)
        for _ in range(3):  # lets grpc's task that consumes the requests finish
            await asyncio.sleep(0)
        return end


@dataclass(frozen=True)
class Ended:
    code: grpc.StatusCode
    details: str


class World:
    """A humanline server on a fresh SQLite file, its event loop, stubs and tokens."""

    def __init__(self, path: Path) -> None:
        fresh.reset()
        self.path = path
        self.loop = asyncio.Runner()
        self.known = Known()
        self.keys = KeyRing.generate()
        self.tokens = Tokens(self.keys)
        self.hints = hints_for(self.known)
        self.realistic = realistic_strings(self.known)
        self.streams: dict[str, Stream] = {}
        self._strategies: dict[type[Message], st.SearchStrategy[Any]] = {}
        # First messages of a Connect stream: mostly a hello or a resume.
        self.openers = messages(
            ConnectRequest,
            hints={**self.hints, "humanline.v1.ConnectRequest.command": st.sampled_from(OPENERS)},
            realistic=self.realistic,
        )
        self._counter = 0
        self.db: sqlite3.Connection | None = None
        self.server: RunningServer | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    def start(self) -> None:
        self.run(self._start())
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        self.run(self.seed())

    async def _start(self) -> None:
        store = create_store(f"sqlite+aiosqlite:///{self.path}", SystemClock())
        self.app = Humanline(store, QUIET, sweep_interval=0.25, watch_interval=0.05)
        await self.app.start()
        # Its quality monitor folds recorded facts into the rollups by itself: stopped, the
        # quality tables change only by calls, and a refused call must not touch them.
        await self.app.quality.stop()
        self.server = await create_server(
            self.app, "127.0.0.1:0", keys=self.keys, hello_timeout=2.0
        )
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.pool = pool_service_pb2_grpc.PoolServiceStub(self.channel)
        self.handoffs = handoff_service_pb2_grpc.HandoffServiceStub(self.channel)
        self.agents = agent_service_pb2_grpc.AgentServiceStub(self.channel)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        if self.server is not None:
            self.run(self._stop(self.server))
        self.loop.close()

    async def _stop(self, server: RunningServer) -> None:
        for stream in self.streams.values():
            await stream.close(cleanly=False)
        await self.channel.close()
        async with asyncio.timeout(15):
            await server.stop(self.app, grace=1.0)

    @property
    def store(self) -> sqlite3.Connection:
        """A read-only connection to the server's database file."""
        assert self.db is not None
        return self.db

    def messages(self, cls: type[M]) -> st.SearchStrategy[M]:
        strategy: st.SearchStrategy[M] | None = self._strategies.get(cls)
        if strategy is None:
            strategy = self._strategies[cls] = messages(
                cls, hints=self.hints, realistic=self.realistic
            )
        return strategy

    def fresh_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}"

    # --- calls ---------------------------------------------------------------------------

    async def unary(self, method: Any, request: Message, metadata: Metadata) -> Reply:
        try:
            response = await method(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            return error.code(), error
        return grpc.StatusCode.OK, response

    async def ok(self, method: Any, request: Message, metadata: Metadata) -> Any:
        code, answer = await self.unary(method, request, metadata)
        assert code == grpc.StatusCode.OK, f"seeding failed: {answer}"
        return answer

    async def watch(self, request: Message, metadata: Metadata) -> Reply:
        """WatchHandoff's first message, or its error; then the call is cancelled."""
        return await self.first(self.handoffs.WatchHandoff, request, metadata)

    async def first(self, method: Any, request: Message, metadata: Metadata) -> Reply:
        """A server stream's first message, or its error; then the call is cancelled."""
        call = method(request, metadata=metadata, timeout=CALL_TIMEOUT)
        try:
            first = await call.read()
            if first is grpc.aio.EOF:
                return await call.code(), None
            return grpc.StatusCode.OK, first
        except grpc.aio.AioRpcError as error:
            return error.code(), error
        finally:
            call.cancel()

    async def create_agent(
        self, agent_id: str, skills: dict[str, int], languages: list[str], capacity: int
    ) -> None:
        agent = agent_pb2.Agent(
            display_name=agent_id.title(),
            skills=[agent_pb2.AgentSkill(skill=s, proficiency=p) for s, p in skills.items()],
            languages=languages,
            capacity=capacity,
        )
        request = pool_service_pb2.CreateAgentRequest(agent_id=agent_id, agent=agent)
        await self.ok(self.pool.CreateAgent, request, self.tokens.of(Role.OPS, "ops"))

    async def request_handoff(self, skill: str, bot: str = BOT) -> str:
        request = handoff_service_pb2.RequestHandoffRequest(
            request_id=str(uuid.uuid4()),
            conversation_id="conv-1",
            customer_id="cust-1",
            interaction_type="order_lookup",
            required_skills=[handoff_pb2.SkillRequirement(skill=skill, min_proficiency=1)],
            summary="Customer asks where the order is.",
        )
        answer = await self.ok(self.handoffs.RequestHandoff, request, self.tokens.of(Role.BOT, bot))
        handoff_id: str = answer.handoff.handoff_id
        await self.settle()
        return handoff_id

    async def connect(self, agent_id: str) -> Stream:
        """Opens agent `agent_id`'s stream with a hello; remembers its resume token."""
        stream = Stream(self.agents, self.tokens.agent(agent_id))
        stream.send(
            ConnectRequest(
                command_id="hello",
                hello=ConnectRequest.Hello(
                    agent_id=agent_id, initial_status=agent_pb2.AGENT_STATUS_AVAILABLE
                ),
            )
        )
        first = await stream.next()
        assert isinstance(first, ConnectResponse), first
        assert first.HasField("welcome"), first
        self.known.resume_tokens.append(first.welcome.resume_token)
        self.streams[agent_id] = stream
        await self.settle()
        return stream

    async def command(self, stream: Stream, **command: Any) -> ConnectResponse:
        self._counter += 1
        command_id = f"seed-{self._counter}"
        stream.send(ConnectRequest(command_id=command_id, **command))
        seen, ended = await stream.until(command_id)
        assert ended is None, ended
        return seen[-1]

    def pending_offers(self, agent_id: str) -> list[str]:
        rows = self.store.execute(
            "SELECT id FROM offers WHERE agent_id = ? AND state = 'PENDING' ORDER BY created_at",
            (agent_id,),
        )
        return [r[0] for r in rows]

    async def seed(self) -> None:
        """ann (billing, orders; capacity 3) and bob (general) online, cara offline, gone
        deleted; bot test-bot's handoffs in every state (a pending offer to ann, one to bob,
        ann's interaction, a completed, a cancelled and a queued one), other-bot's queued."""
        await self.create_agent("ann", {"billing": 3, "orders": 2}, ["en", "de"], 3)
        await self.create_agent("bob", {"general": 3}, ["en"], 1)
        await self.create_agent("cara", {"fraud": 5, "billing": 1}, ["fr"], 2)
        await self.create_agent("gone", {"general": 1}, ["en"], 1)
        await self.ok(
            self.pool.DeleteAgent,
            pool_service_pb2.DeleteAgentRequest(agent_id="gone"),
            self.tokens.of(Role.OPS, "ops"),
        )
        ann = await self.connect("ann")
        await self.connect("bob")
        await self.request_handoff("billing")
        (offer,) = self.pending_offers("ann")
        await self.command(ann, accept_offer=ConnectRequest.AcceptOffer(offer_id=offer))
        await self.ok(
            self.agents.CompleteInteraction,
            agent_service_pb2.CompleteInteractionRequest(
                agent_id="ann",
                interaction_id=offer,
                outcome=handoff_pb2.OUTCOME_RESOLVED,
                disposition_code="done",
            ),
            self.tokens.agent("ann"),
        )
        await self.request_handoff("billing")
        (offer,) = self.pending_offers("ann")
        await self.command(ann, accept_offer=ConnectRequest.AcceptOffer(offer_id=offer))
        await self.request_handoff("billing")  # stays offered to ann
        await self.request_handoff("general")  # offered to bob
        cancelled = await self.request_handoff("nobody-has-this")
        await self.ok(
            self.handoffs.CancelHandoff,
            handoff_service_pb2.CancelHandoffRequest(handoff_id=cancelled),
            self.tokens.of(Role.BOT, BOT),
        )
        await self.request_handoff("nobody-has-this")
        await self.request_handoff("nobody-has-this", bot=OTHER_BOT)
        await self.settle()

    # --- state -----------------------------------------------------------------------------

    async def settle(self, streams: int | None = None) -> None:
        """Waits until nothing the calls so far set off is still running: streams ended
        (down to `streams` attached), their drops recorded, matching done."""
        if streams is not None:
            async with asyncio.timeout(CALL_TIMEOUT):
                while self.app.hub.agent_streams > streams:
                    await asyncio.sleep(0.005)
        for _ in range(2):
            await self.app.sessions.drained()
            await self.app.dispatcher.settled()
            await asyncio.sleep(0)

    def snapshot(self) -> Snapshot:
        """Every table's rows (but the volatile columns), read in one transaction."""
        self.store.execute("BEGIN")
        try:
            tables = [
                r[0]
                for r in self.store.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            result: Snapshot = {}
            for table in (t for t in tables if t not in DERIVED):
                columns = [
                    r[1]
                    for r in self.store.execute(f'PRAGMA table_info("{table}")')
                    if (table, r[1]) not in VOLATILE
                ]
                listed = ", ".join(f'"{c}"' for c in columns)
                rows = self.store.execute(f'SELECT {listed} FROM "{table}"').fetchall()
                result[table] = sorted([(table, *columns), *rows], key=repr)
        finally:
            self.store.execute("COMMIT")
        return result

    def refresh(self) -> None:
        self.known.refresh(self.store)


def diff(before: Snapshot, after: Snapshot) -> str:
    lines = []
    for table in sorted(before.keys() | after.keys()):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        for row in sorted(old - new, key=repr):
            lines.append(f"  {table}: - {row}")
        for row in sorted(new - old, key=repr):
            lines.append(f"  {table}: + {row}")
    return "\n".join(lines)


def show(message: Message) -> str:
    """A message in text format, on one line, shortened."""
    return _cut(text_format.MessageToString(message, as_one_line=True))


def status_code(number: int) -> grpc.StatusCode:
    """The gRPC status code with `number` (UNKNOWN for a number that is none)."""
    return next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)


def check(
    what: str, caller: Caller, code: grpc.StatusCode, before: Snapshot, after: Snapshot | None
) -> None:
    """The properties: never INTERNAL or UNKNOWN; the right refusal for a refused caller;
    a refusal changes nothing."""
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
        f"{what} as {caller} answered {code.name}"
    )
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: no answer in {CALL_TIMEOUT}s"
    if caller.kind == WRONG_ROLE:
        assert code == grpc.StatusCode.PERMISSION_DENIED, f"{what} as {caller}: {code.name}"
    if caller.kind == UNAUTHENTICATED:
        assert code == grpc.StatusCode.UNAUTHENTICATED, f"{what} as {caller}: {code.name}"
    if after is not None:
        assert before == after, f"{what} as {caller} was refused ({code.name}) but changed:\n" + (
            diff(before, after)
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A seeded server, shared by all the examples of one test."""
    w = World(tmp_path / "humanline.db")
    try:
        w.start()
        yield w
    finally:
        w.close()


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(example: Callable[[st.DataObject], None]) -> None:
    """Runs `example` on Hypothesis' examples, one after the other against the same server,
    and then raises the first failure as it happened, with the call that failed. Hypothesis
    does not see failures: it would replay and shrink the failing example against a server
    whose state has moved on since (each call is checked on its own, against a snapshot of
    the state just before it)."""
    failures: list[Exception] = []

    @FUZZ
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        try:
            example(data)
        except Exception as exc:
            failures.append(exc)

    examples()
    if failures:
        raise failures[0]


# --- unary RPCs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unary:
    """A unary RPC, the roles it is for and who its right caller is."""

    name: str
    request: type[Message]
    stub: Callable[[World], Any]
    allowed: tuple[Role, ...]
    right: Callable[[World, Message, st.DataObject], tuple[Metadata, str]]

    def __repr__(self) -> str:
        return self.name


def as_ops(world: World, request: Message, data: st.DataObject) -> tuple[Metadata, str]:
    return world.tokens.of(Role.OPS, "ops"), "ops:ops"


def as_bot(world: World, request: Message, data: st.DataObject) -> tuple[Metadata, str]:
    bot = data.draw(st.sampled_from([BOT, OTHER_BOT]), label="bot")
    return world.tokens.of(Role.BOT, bot), f"bot:{bot}"


def as_bot_or_ops(world: World, request: Message, data: st.DataObject) -> tuple[Metadata, str]:
    role, subject = data.draw(
        st.sampled_from([(Role.BOT, BOT), (Role.BOT, OTHER_BOT), (Role.OPS, "ops")]), label="as"
    )
    return world.tokens.of(role, subject), f"{role.value}:{subject}"


def as_named_agent(world: World, request: Message, data: st.DataObject) -> tuple[Metadata, str]:
    return world.tokens.agent_or_ann(getattr(request, "agent_id", ""))


POOL = (Role.OPS,)
UNARY: Final = [
    Unary("CreateAgent", pool_service_pb2.CreateAgentRequest, lambda w: w.pool, POOL, as_ops),
    Unary("UpdateAgent", pool_service_pb2.UpdateAgentRequest, lambda w: w.pool, POOL, as_ops),
    Unary("GetAgent", pool_service_pb2.GetAgentRequest, lambda w: w.pool, POOL, as_ops),
    Unary("ListAgents", pool_service_pb2.ListAgentsRequest, lambda w: w.pool, POOL, as_ops),
    Unary("DeleteAgent", pool_service_pb2.DeleteAgentRequest, lambda w: w.pool, POOL, as_ops),
    Unary("GetPoolStatus", pool_service_pb2.GetPoolStatusRequest, lambda w: w.pool, POOL, as_ops),
    Unary(
        "GetQualityReport",
        pool_service_pb2.GetQualityReportRequest,
        lambda w: w.pool,
        POOL,
        as_ops,
    ),
    *(
        Unary(name, getattr(pool_service_pb2, f"{name}Request"), lambda w: w.pool, POOL, as_ops)
        for name in (
            "CreateRoutingPolicy",
            "UpdateRoutingPolicy",
            "GetRoutingPolicy",
            "ListRoutingPolicies",
            "DeleteRoutingPolicy",
        )
    ),
    Unary(
        "RequestHandoff",
        handoff_service_pb2.RequestHandoffRequest,
        lambda w: w.handoffs,
        (Role.BOT,),
        as_bot,
    ),
    Unary(
        "GetHandoff",
        handoff_service_pb2.GetHandoffRequest,
        lambda w: w.handoffs,
        (Role.BOT, Role.OPS),
        as_bot_or_ops,
    ),
    Unary(
        "CancelHandoff",
        handoff_service_pb2.CancelHandoffRequest,
        lambda w: w.handoffs,
        (Role.BOT, Role.OPS),
        as_bot_or_ops,
    ),
    Unary(
        "RecordFeedback",
        handoff_service_pb2.RecordFeedbackRequest,
        lambda w: w.handoffs,
        (Role.BOT, Role.OPS),
        as_bot_or_ops,
    ),
    Unary(
        "CompleteInteraction",
        agent_service_pb2.CompleteInteractionRequest,
        lambda w: w.agents,
        (Role.AGENT,),
        as_named_agent,
    ),
]


@pytest.mark.parametrize("rpc", UNARY, ids=repr)
def test_unary_rpc(world: World, rpc: Unary) -> None:
    method = getattr(rpc.stub(world), rpc.name)

    def example(data: st.DataObject) -> None:
        world.refresh()
        request = data.draw(world.messages(rpc.request), label="request")
        caller = draw_caller(
            data, world.tokens, rpc.allowed, lambda: rpc.right(world, request, data)
        )

        async def call() -> None:
            await world.settle()
            before = world.snapshot()
            code, answer = await world.unary(method, request, caller.metadata)
            refused = code != grpc.StatusCode.OK
            if not refused and rpc.name == "ListAgents" and answer.next_page_token:
                world.known.page_tokens.append(answer.next_page_token)
            after = None
            if refused:
                await world.settle()
                after = world.snapshot()
            check(f"{rpc.name}({show(request)})", caller, code, before, after)

        world.run(call())

    fuzz(example)


def test_watch_handoff(world: World) -> None:
    """WatchHandoff's first answer (the handoff as it is) or its error; then it is cancelled."""

    def example(data: st.DataObject) -> None:
        world.refresh()
        request = data.draw(world.messages(handoff_service_pb2.WatchHandoffRequest))
        caller = draw_caller(
            data, world.tokens, (Role.BOT, Role.OPS), lambda: as_bot_or_ops(world, request, data)
        )

        async def call() -> None:
            await world.settle()
            before = world.snapshot()
            code, _ = await world.watch(request, caller.metadata)
            after = None
            if code != grpc.StatusCode.OK:
                await world.settle()
                after = world.snapshot()
            check(f"WatchHandoff({show(request)})", caller, code, before, after)

        world.run(call())

    fuzz(example)


def test_watch_pool_status(world: World) -> None:
    """WatchPoolStatus' first answer (the status now) or its error; then it is cancelled."""

    def example(data: st.DataObject) -> None:
        world.refresh()
        request = data.draw(world.messages(pool_service_pb2.WatchPoolStatusRequest))
        caller = draw_caller(data, world.tokens, POOL, lambda: as_ops(world, request, data))

        async def call() -> None:
            await world.settle()
            before = world.snapshot()
            code, _ = await world.first(world.pool.WatchPoolStatus, request, caller.metadata)
            after = None
            if code != grpc.StatusCode.OK:
                await world.settle()
                after = world.snapshot()
            check(f"WatchPoolStatus({show(request)})", caller, code, before, after)

        world.run(call())

    fuzz(example)


# --- the agent stream ------------------------------------------------------------------------


def test_connect_first_message(world: World) -> None:
    """Connect's first message: a hello or resume that opens a session (then the stream is
    left or dropped), or a refusal that ends the stream and changes nothing."""
    fuzz(lambda data: first_message(world, data))


def first_message(world: World, data: st.DataObject) -> None:
    world.refresh()
    first = data.draw(world.openers, label="first message")
    opener = first.hello if first.HasField("hello") else first.resume
    caller = draw_caller(
        data, world.tokens, (Role.AGENT,), lambda: as_named_agent(world, opener, data)
    )
    cleanly = data.draw(st.booleans(), label="leave cleanly (else drop)")

    async def call() -> None:
        streams = world.app.hub.agent_streams
        await world.settle()
        before = world.snapshot()
        stream = Stream(world.agents, caller.metadata)
        stream.send(first)
        answer = await stream.next()
        after = None
        if isinstance(answer, Ended):
            code = answer.code
            if code != grpc.StatusCode.OK:
                await world.settle()
                after = world.snapshot()
            await stream.close(cleanly=False)
        else:
            assert answer.HasField("welcome"), answer
            world.known.resume_tokens.append(answer.welcome.resume_token)
            # It took over the session of the agent's stream held since the seeding, if any.
            replaced = world.streams.pop(opener.agent_id, None)
            end = await stream.close(cleanly=cleanly)  # a log-out ends OK
            code = grpc.StatusCode.OK if end is None else end.code
            if replaced is not None:
                await replaced.close(cleanly=False)
                streams -= 1
            await world.settle(streams)
        check(f"Connect({show(first)})", caller, code, before, after)

    world.run(call())


def test_connect_commands(world: World) -> None:
    """Commands on ann's open stream: a refused one is answered with `command_rejected`
    (never INTERNAL or UNKNOWN), changes nothing, and the stream goes on."""
    fuzz(lambda data: commands(world, data))


def commands(world: World, data: st.DataObject) -> None:
    world.run(ready_for_commands(world))
    world.refresh()
    commands = data.draw(
        st.lists(world.messages(ConnectRequest), min_size=1, max_size=3), label="commands"
    )
    caller = Caller(RIGHT, world.tokens.agent("ann"), "agent:ann")

    async def call() -> None:
        stream = world.streams["ann"]
        for command in commands:
            await world.settle()
            before = world.snapshot()
            barrier = world.fresh_id("zz-barrier")
            stream.send(command)
            stream.send(ConnectRequest(command_id=barrier, heartbeat=ConnectRequest.Heartbeat()))
            seen, ended = await stream.until(barrier)
            what = f"Connect command {show(command)}"
            code = ended.code if ended is not None else grpc.StatusCode.OK
            for message in seen:
                if message.HasField("command_rejected"):
                    rejection = message.command_rejected
                    what += f" (rejected: {show(rejection)})"
                    assert rejection.code != 0, what
                    if code == grpc.StatusCode.OK:
                        code = status_code(rejection.code)
            after = None
            if code != grpc.StatusCode.OK:
                await world.settle()
                after = world.snapshot()
            check(what, caller, code, before, after)
            if ended is not None:
                world.streams.pop("ann")
                return

    world.run(call())


async def ready_for_commands(world: World) -> None:
    """ann's stream open, ann available, with a pending offer to accept or decline when her
    capacity allows one."""
    stream = world.streams.get("ann")
    if stream is None or stream.ended is not None:
        stream = await world.connect("ann")
    row = world.store.execute(
        "SELECT status, load, capacity FROM agents WHERE id = 'ann'"
    ).fetchone()
    status, load, capacity = row
    if status != "AVAILABLE":
        await world.command(
            stream, set_status=ConnectRequest.SetStatus(status=agent_pb2.AGENT_STATUS_AVAILABLE)
        )
    if not world.pending_offers("ann") and load < capacity:
        await world.request_handoff("billing")
    await world.settle()
