"""Access tokens: JWTs signed with Ed25519 keys from a keyring file (PyJWT, `cryptography`).

A token says who its bearer is (`sub`: the agent id, the bot's id, the operator's name) and
in what role (`role`: agent, bot or ops), and when it expires. It is signed with the newest
key of the keyring that has a private part, and names that key (`kid`); a server accepts a
token signed by any key of its keyring, so keys rotate without a flag day: add a key, let
tokens signed with the old one expire, retire it. A server needs only the public parts; a
keyring made with `humanline token keygen` holds both, readable by its owner only.

The keyring is a JSON file:

    {"humanline_keyring": 1,
     "keys": [{"kid": "...", "created": "2026-12-02T12:00:00+00:00",
               "public": "<base64url, 32 bytes>", "private": "<base64url, 32 bytes>"}]}

Why Ed25519 (EdDSA): small keys, fast verification, and the servers can be given public keys
only. Why PyJWT: the standard claims (exp, iat, aud, iss) checked the standard way.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from humanline.domain.access import Principal, Role
from humanline.domain.validation import IDENTIFIER

ISSUER = "humanline"
AUDIENCE = "humanline"
ALGORITHM = "EdDSA"
FORMAT = 1
LEEWAY = timedelta(seconds=30)  # clocks of issuers and servers may differ that much

DEFAULT_TTL: Mapping[Role, timedelta] = {
    Role.AGENT: timedelta(hours=12),  # a shift
    Role.BOT: timedelta(days=30),  # a service's credential, rotated monthly
    Role.OPS: timedelta(hours=8),  # a working day
}


class KeyRingError(Exception):
    """The keyring file is missing, unreadable or malformed; the message says which."""


class TokenError(Exception):
    """A token that does not authenticate its bearer: `reason` says why (TOKEN_EXPIRED,
    TOKEN_INVALID, TOKEN_KEY_UNKNOWN), for the bearer; the message for people."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    """One key of the keyring; `private` is None where only verification is needed."""

    kid: str
    created: datetime
    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None

    @classmethod
    def generate(cls, now: datetime) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
        return cls(kid, now, private.public_key(), private)

    def to_json(self, *, with_private: bool = True) -> dict[str, str]:
        entry = {
            "kid": self.kid,
            "created": self.created.isoformat(),
            "public": _b64(self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)),
        }
        if with_private and self.private is not None:
            raw = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            entry["private"] = _b64(raw)
        return entry

    @classmethod
    def from_json(cls, entry: Any) -> SigningKey:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            raise ValueError("each key needs a kid")
        try:
            created = datetime.fromisoformat(entry["created"])
            public = Ed25519PublicKey.from_public_bytes(_unb64(entry["public"]))
            private = (
                Ed25519PrivateKey.from_private_bytes(_unb64(entry["private"]))
                if entry.get("private")
                else None
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"key {entry['kid']}: {exc}") from None
        if private is not None and private.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        ) != public.public_bytes(Encoding.Raw, PublicFormat.Raw):
            raise ValueError(f"key {entry['kid']}: the private part does not match the public")
        return cls(entry["kid"], created, public, private)


@dataclass(frozen=True)
class KeyRing:
    """The keys tokens are signed and verified with, oldest first."""

    keys: tuple[SigningKey, ...]

    @classmethod
    def generate(cls, now: datetime | None = None) -> KeyRing:
        """A keyring with one new key."""
        return cls((SigningKey.generate(now or datetime.now(UTC)),))

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """The keyring in `path`; KeyRingError saying what is wrong with it."""
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyRingError(
                f"no keyring at {path}: create one with `humanline token keygen`"
            ) from None
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"cannot read the keyring {path}: {exc}") from None
        if not isinstance(document, dict) or document.get("humanline_keyring") != FORMAT:
            raise KeyRingError(f"{path} is not a humanline keyring (format {FORMAT})")
        entries = document.get("keys")
        if not isinstance(entries, list) or not entries:
            raise KeyRingError(f"the keyring {path} has no keys")
        try:
            keys = tuple(SigningKey.from_json(entry) for entry in entries)
        except ValueError as exc:
            raise KeyRingError(f"the keyring {path}: {exc}") from None
        if len({k.kid for k in keys}) != len(keys):
            raise KeyRingError(f"the keyring {path} names a key twice")
        return cls(keys)

    def save(self, path: Path, *, with_private: bool = True) -> None:
        """Writes the keyring to `path` atomically, readable by its owner only."""
        document = {
            "humanline_keyring": FORMAT,
            "keys": [k.to_json(with_private=with_private) for k in self.keys],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def with_new_key(self, now: datetime | None = None) -> KeyRing:
        """The keyring with one more key, which signs from now on (rotation)."""
        return replace(self, keys=(*self.keys, SigningKey.generate(now or datetime.now(UTC))))

    def without(self, kid: str) -> KeyRing:
        """The keyring without key `kid` (retired: its tokens no longer verify)."""
        kept = tuple(k for k in self.keys if k.kid != kid)
        if len(kept) == len(self.keys):
            raise KeyRingError(f"no key {kid} in the keyring")
        if not kept:
            raise KeyRingError("cannot retire the last key")
        return replace(self, keys=kept)

    @property
    def signing_key(self) -> SigningKey:
        """The newest key with a private part."""
        for key in reversed(self.keys):
            if key.private is not None:
                return key
        raise KeyRingError("the keyring has public keys only: it cannot issue tokens")

    def issue(
        self, principal: Principal, ttl: timedelta | None = None, now: datetime | None = None
    ) -> str:
        """A token for `principal`, valid for `ttl` (the role's default) from `now`."""
        check_subject(principal.role, principal.subject)
        key = self.signing_key
        issued = now or datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": principal.subject,
            "role": principal.role.value,
            "iat": int(issued.timestamp()),
            "exp": int((issued + (ttl or DEFAULT_TTL[principal.role])).timestamp()),
            "jti": secrets.token_hex(8),
        }
        assert key.private is not None
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verify(self, token: str) -> Principal:
        """The principal a token authenticates; TokenError if it does not."""
        return self.check(token)[0]

    def check(self, token: str) -> tuple[Principal, float]:
        """The principal a token authenticates and when the token expires (a POSIX time);
        TokenError if it does not."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise TokenError("the token is not a JWT", "TOKEN_INVALID") from None
        key = next((k for k in self.keys if k.kid == kid), None)
        if key is None:
            raise TokenError("the token was signed with an unknown key", "TOKEN_KEY_UNKNOWN")
        try:
            claims = jwt.decode(
                token,
                key.public,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired", "TOKEN_EXPIRED") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the token is not valid: {exc}", "TOKEN_INVALID") from None
        try:
            role = Role(claims.get("role"))
            subject = claims["sub"]
            check_subject(role, subject)
        except (ValueError, TypeError) as exc:
            raise TokenError(f"the token's claims are not valid: {exc}", "TOKEN_INVALID") from None
        return Principal(role, subject), float(claims["exp"]) + LEEWAY.total_seconds()


def check_subject(role: Role, subject: object) -> None:
    """A subject has the shape of an agent id (ValueError otherwise)."""
    if not isinstance(subject, str) or not IDENTIFIER.fullmatch(subject):
        raise ValueError(
            f"a {role.value} id is 1-64 characters of a-z, 0-9, '_', '-' and '.', starting"
            f" with a letter or digit, not {subject!r}"
        )
