"""Who is calling: the bearer token in a call's `authorization` metadata, verified.

Every RPC but health and reflection authenticates its caller before anything else, so an
unauthenticated call learns nothing but UNAUTHENTICATED (reason TOKEN_MISSING,
TOKEN_INVALID, TOKEN_EXPIRED or TOKEN_KEY_UNKNOWN). Verifying a signature costs more than a
small RPC, and bots and apps send the same token on every call, so a verified token is kept
(until it expires) and recognised again by its text.

A server started with the insecure development flag has no keyring: every caller is the
`UNCHECKED` principal, which the access rules let through.

`Gate` is everything a call passes before its handler runs, in this order: the token, the
client certificate (where mutual TLS is on: bots and ops must present one naming them), the
caller's rate limit, and the role the RPC is for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from humanline.domain.access import (
    CERTIFIED_ROLES,
    UNCHECKED,
    Principal,
    Role,
    require_certificate,
    require_role,
)
from humanline.domain.errors import Unauthenticated
from humanline.grpc.limits import RateLimiter, StreamLimiter, peer_address
from humanline.service.metrics import Metrics
from humanline.tokens import KeyRing, TokenError

SCHEME = "bearer "
MAX_TOKEN = 4096  # bytes of a token worth verifying at all
CACHE_SIZE = 50_000  # verified tokens kept; beyond, the cache starts over


class Authenticator:
    """Turns a call's metadata into its principal."""

    def __init__(self, keys: KeyRing | None) -> None:
        self._keys = keys
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> principal, expiry

    @property
    def checks(self) -> bool:
        """False on a server started without authentication."""
        return self._keys is not None

    def principal(self, metadata: Iterable[Any] | None) -> Principal:
        """The caller of a call with `metadata` (its invocation metadata); Unauthenticated
        when it has no valid bearer token."""
        if self._keys is None:
            return UNCHECKED
        token = _bearer(metadata)
        known = self._verified.get(token)
        now = time.time()
        if known is not None and known[1] > now:
            return known[0]
        try:
            principal, expires = self._keys.check(token)
        except TokenError as exc:
            self._verified.pop(token, None)
            raise Unauthenticated(str(exc), reason=exc.reason) from None
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal


def _bearer(metadata: Iterable[Any] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            if len(text) > MAX_TOKEN or not text.lower().startswith(SCHEME):
                raise Unauthenticated(
                    "the authorization metadata must be `Bearer <token>`",
                    reason="TOKEN_INVALID",
                )
            return text[len(SCHEME) :].strip()
    raise Unauthenticated(
        "a bearer token is required (authorization metadata: `Bearer <token>`)",
        reason="TOKEN_MISSING",
    )


# What gRPC's auth context names a verified client certificate by.
CERTIFICATE_NAMES = ("x509_common_name", "x509_subject_alternative_name")


@dataclass
class Gate:
    """What every call passes before its handler: who the caller is, whether its client
    certificate names it (`certificates`: mutual TLS is on), whether it is within its rate,
    and whether its role may make the call. `metrics`, when given, records how each call
    went (`humanline.grpc.errors`)."""

    auth: Authenticator
    rate: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))
    streams: StreamLimiter = field(default_factory=lambda: StreamLimiter(0))
    certificates: bool = False
    metrics: Metrics | None = None

    def admit(
        self, context: grpc.aio.ServicerContext[Any, Any], roles: tuple[Role, ...]
    ) -> Principal:
        """The call's principal, if it may make this call now; else the DomainError why not."""
        principal = self.auth.principal(context.invocation_metadata())
        if self.certificates and principal.role in CERTIFIED_ROLES:
            require_certificate(principal, certificate_identities(context.auth_context()))
        self.limit(principal, context)
        require_role(principal, *roles)
        return principal

    def limit(self, principal: Principal, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Counts one call (or stream command) against the caller's rate: RESOURCE_EXHAUSTED
        over it. Without authentication every caller is the same principal, so the rate is
        kept per peer address instead."""
        if not self.rate.on:
            return
        if principal.unchecked:
            address = peer_address(context.peer())
            self.rate.check(address, address)
        else:
            self.rate.check(principal, str(principal))


def certificate_identities(auth_context: Mapping[str, Iterable[bytes]]) -> frozenset[str]:
    """The names a verified client certificate gives its holder (none without one)."""
    names: set[str] = set()
    for key in CERTIFICATE_NAMES:
        for value in auth_context.get(key, ()):
            names.add(value.decode(errors="replace"))
    return frozenset(names)
