"""Who may do what: callers' roles and identities, and the rules that bind them.

Three kinds of caller, each with one job:
- an **agent**'s app, bound to one agent id: opens that agent's session only, and accepts,
  declines and completes only that agent's offers and interactions;
- a **bot** (an upstream service, by its own identity): requests handoffs and sees, watches
  and cancels only the handoffs it requested;
- **ops** (people and tools that run the pool): manage agents, read the pool, see every
  handoff.

Pure: the transport turns a verified token into a `Principal`; the use cases ask these rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from humanline.domain.errors import PermissionDenied, Unauthenticated


class Role(enum.Enum):
    """What a caller is."""

    AGENT = "agent"
    BOT = "bot"
    OPS = "ops"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its role and who it is (the agent id, the bot's id, the
    operator's name). `unchecked` is the caller of a server started without authentication
    (a development flag): every rule lets it through."""

    role: Role
    subject: str
    unchecked: bool = False

    def __str__(self) -> str:
        return f"{self.role.value}:{self.subject}"


UNCHECKED = Principal(Role.OPS, "unchecked", unchecked=True)


def require_role(principal: Principal, *roles: Role) -> None:
    """Refuses a caller whose role may not make this call (reason ROLE_NOT_ALLOWED)."""
    if principal.role not in roles and not principal.unchecked:
        allowed = ", ".join(r.value for r in roles)
        raise PermissionDenied(
            f"a {principal.role.value} may not make this call (it is for: {allowed})",
            reason="ROLE_NOT_ALLOWED",
            metadata={"role": principal.role.value, "allowed": allowed},
        )


def require_agent(principal: Principal, agent_id: str) -> None:
    """Refuses an agent's app acting as another agent (reason AGENT_MISMATCH)."""
    require_role(principal, Role.AGENT)
    if principal.subject != agent_id and not principal.unchecked:
        raise PermissionDenied(
            "the token is for another agent",
            reason="AGENT_MISMATCH",
            metadata={"agent_id": agent_id},
        )


def may_see_handoff(principal: Principal, bot_id: str) -> bool:
    """Ops see every handoff; a bot sees those it requested (`bot_id`)."""
    return (
        principal.role is Role.OPS
        or principal.unchecked
        or (principal.role is Role.BOT and principal.subject == bot_id)
    )


def require_handoff_access(principal: Principal, handoff_id: str, bot_id: str) -> None:
    """Refuses a caller who may not see handoff `handoff_id`, requested by `bot_id`
    (reason HANDOFF_NOT_YOURS)."""
    require_role(principal, Role.BOT, Role.OPS)
    if not may_see_handoff(principal, bot_id):
        raise PermissionDenied(
            "the handoff was requested by another bot",
            reason="HANDOFF_NOT_YOURS",
            metadata={"handoff_id": handoff_id},
        )


CERTIFIED_ROLES = (Role.BOT, Role.OPS)


def require_certificate(principal: Principal, identities: frozenset[str]) -> None:
    """Where mutual TLS is on, a bot or ops caller must also hold a client certificate that
    names it (`identities`: the certificate's common name and subject alternative names,
    empty without one): a stolen token alone lets nobody in. Agents' apps, on their own
    devices, hold no certificates."""
    if principal.role not in CERTIFIED_ROLES or principal.unchecked:
        return
    if not identities:
        raise Unauthenticated(
            f"a {principal.role.value} must call with a client certificate (mutual TLS)",
            reason="CLIENT_CERTIFICATE_REQUIRED",
        )
    if principal.subject not in identities:
        raise PermissionDenied(
            "the client certificate is for another caller than the token",
            reason="CERTIFICATE_MISMATCH",
            metadata={"subject": principal.subject},
        )
