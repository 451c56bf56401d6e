"""Access tokens and the rules of who may do what: a token verifies only with a key of the
keyring, only until it expires, only with the claims it was issued with; keys rotate (a new
key signs, the old one still verifies until retired); the keyring file is private to its
owner; the access rules bind agents to their own id and bots to their own handoffs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from humanline.domain.access import (
    Principal,
    Role,
    may_see_handoff,
    require_agent,
    require_handoff_access,
    require_role,
)
from humanline.domain.errors import PermissionDenied
from humanline.tokens import ALGORITHM, AUDIENCE, ISSUER, KeyRing, KeyRingError, TokenError

ALICE = Principal(Role.AGENT, "alice")
BOT = Principal(Role.BOT, "support-bot")
OPS = Principal(Role.OPS, "ops")
KEYS = KeyRing.generate()


def test_a_token_verifies_as_the_principal_it_was_issued_for() -> None:
    ring = KeyRing.generate()
    for principal in (ALICE, BOT, OPS):
        assert ring.verify(ring.issue(principal)) == principal


def test_expired_forged_and_foreign_tokens_are_refused_with_their_reason() -> None:
    ring, other = KeyRing.generate(), KeyRing.generate()
    long_ago = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(TokenError) as expired:
        ring.verify(ring.issue(ALICE, timedelta(minutes=5), now=long_ago))
    assert expired.value.reason == "TOKEN_EXPIRED"
    with pytest.raises(TokenError) as foreign:
        ring.verify(other.issue(ALICE))
    assert foreign.value.reason == "TOKEN_KEY_UNKNOWN"
    # The right key id with another key's signature: a forgery.
    kid = ring.signing_key.kid
    forged = jwt.encode(
        jwt.decode(ring.issue(OPS), options={"verify_signature": False}),
        other.signing_key.private,  # type: ignore[arg-type]
        algorithm=ALGORITHM,
        headers={"kid": kid},
    )
    with pytest.raises(TokenError) as bad:
        ring.verify(forged)
    assert bad.value.reason == "TOKEN_INVALID"
    for garbage in ("", "not-a-token", "a.b.c", "Bearer x"):
        with pytest.raises(TokenError) as wrong:
            ring.verify(garbage)
        assert wrong.value.reason in {"TOKEN_INVALID", "TOKEN_KEY_UNKNOWN"}


def test_a_token_with_a_changed_role_or_audience_is_refused() -> None:
    ring = KeyRing.generate()
    key = ring.signing_key
    now = int(datetime.now(UTC).timestamp())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60}
    for claims in (
        {**base, "role": "root"},
        {**base, "role": "ops", "aud": "elsewhere"},
        {**base, "role": "ops", "iss": "elsewhere"},
        {**base, "role": "agent", "sub": "Not An Id"},
        {k: v for k, v in {**base, "role": "ops"}.items() if k != "exp"},
    ):
        token = jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})  # type: ignore[arg-type]
        with pytest.raises(TokenError):
            ring.verify(token)


def test_keys_rotate_old_tokens_verify_until_their_key_is_retired(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = KeyRing.generate()
    first.save(path)
    old_token = first.issue(BOT)
    rotated = KeyRing.load(path).with_new_key()
    rotated.save(path)
    assert rotated.signing_key.kid != first.signing_key.kid
    new_token = rotated.issue(BOT)
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.signing_key.kid
    loaded = KeyRing.load(path)
    assert loaded.verify(old_token) == loaded.verify(new_token) == BOT
    retired = loaded.without(first.signing_key.kid)
    with pytest.raises(TokenError):
        retired.verify(old_token)
    assert retired.verify(new_token) == BOT
    with pytest.raises(KeyRingError):
        retired.without(rotated.signing_key.kid)  # the last key stays


def test_the_keyring_file_is_private_and_a_public_copy_cannot_issue(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    ring.save(tmp_path / "keys.json")
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    ring.save(tmp_path / "public.json", with_private=False)
    public = KeyRing.load(tmp_path / "public.json")
    assert public.verify(ring.issue(OPS)) == OPS
    with pytest.raises(KeyRingError, match="public keys only"):
        public.issue(OPS)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{", "cannot read"),
        ("[]", "not a humanline keyring"),
        ('{"humanline_keyring": 1, "keys": []}', "no keys"),
        ('{"humanline_keyring": 1, "keys": [{"kid": "k"}]}', "key k"),
    ],
)
def test_a_bad_keyring_is_refused_with_a_clear_message(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyRingError, match=complaint):
        KeyRing.load(path)
    with pytest.raises(KeyRingError, match="humanline token keygen"):
        KeyRing.load(tmp_path / "missing.json")


def test_a_key_whose_private_part_belongs_to_another_is_refused(tmp_path: Path) -> None:
    one, two = KeyRing.generate(), KeyRing.generate()
    entry = one.signing_key.to_json()
    entry["private"] = two.signing_key.to_json()["private"]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"humanline_keyring": 1, "keys": [entry]}))
    with pytest.raises(KeyRingError, match="does not match"):
        KeyRing.load(path)


@given(st.sampled_from(list(Role)), st.text(max_size=80))
def test_only_identifier_subjects_are_issued(role: Role, subject: str) -> None:
    try:
        token = KEYS.issue(Principal(role, subject))
    except ValueError:
        return
    assert KEYS.verify(token) == Principal(role, subject)


def test_agents_act_only_as_themselves_and_bots_see_only_their_handoffs() -> None:
    require_agent(ALICE, "alice")
    with pytest.raises(PermissionDenied) as other:
        require_agent(ALICE, "bob")
    assert other.value.reason == "AGENT_MISMATCH"
    with pytest.raises(PermissionDenied) as role:
        require_agent(OPS, "alice")
    assert role.value.reason == "ROLE_NOT_ALLOWED"
    require_role(OPS, Role.OPS)
    with pytest.raises(PermissionDenied):
        require_role(BOT, Role.OPS)

    assert may_see_handoff(BOT, "support-bot")
    assert not may_see_handoff(BOT, "billing-bot")
    assert may_see_handoff(OPS, "billing-bot")
    assert not may_see_handoff(ALICE, "support-bot")
    require_handoff_access(OPS, "h-1", "billing-bot")
    with pytest.raises(PermissionDenied) as theirs:
        require_handoff_access(BOT, "h-1", "billing-bot")
    assert theirs.value.reason == "HANDOFF_NOT_YOURS"
    assert theirs.value.metadata == {"handoff_id": "h-1"}


def test_the_token_command_makes_keys_issues_rotates_and_retires(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"

    def token(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "humanline", "token", "--keys", str(keys), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert token("issue", "--role", "ops").returncode == 2  # no keyring yet
    made = token("keygen")
    assert made.returncode == 0, made.stderr
    issued = token("issue", "--role", "agent", "--agent-id", "alice", "--ttl", "15m")
    assert issued.returncode == 0, issued.stderr
    first = KeyRing.load(keys)
    assert first.verify(issued.stdout.strip()) == ALICE
    claims = jwt.decode(issued.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert token("keygen").returncode == 0
    assert len(KeyRing.load(keys).keys) == 2
    retired = token("retire", first.signing_key.kid)
    assert retired.returncode == 0, retired.stderr
    with pytest.raises(TokenError):
        KeyRing.load(keys).verify(issued.stdout.strip())
    for bad in (
        ("issue", "--role", "bot"),
        ("issue", "--role", "agent", "--agent-id", "Not An Id"),
        ("issue", "--role", "ops", "--ttl", "forever"),
        ("retire", "no-such-key"),
    ):
        refused = token(*bad)
        assert refused.returncode == 2, bad
        assert refused.stderr.startswith("humanline: error:"), refused.stderr
        assert refused.stderr.count("\n") == 1


def test_the_keyring_may_also_be_named_after_the_action(tmp_path: Path) -> None:
    """`humanline token keygen --keys F`, as deploy/compose.yaml and the README write it."""
    keys = tmp_path / "keys.json"

    def token(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "humanline", "token", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    made = token("keygen", "--keys", str(keys))
    assert made.returncode == 0, made.stderr
    issued = token("issue", "--role", "agent", "--agent-id", "alice", "--keys", str(keys))
    assert issued.returncode == 0, issued.stderr
    assert KeyRing.load(keys).verify(issued.stdout.strip()) == ALICE
