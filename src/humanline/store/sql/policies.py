"""Routing policies in SQL: one row per interaction type, the policy as a JSON document.

The document is this module's own format (seconds as numbers, enums by name), read back into
the domain's `RoutingPolicy`; a field a later version adds takes its default when an older
row lacks it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from humanline.domain.model import AgentOrder, RiskClass, SkillRequirement
from humanline.domain.routing import RelaxationStep, RoutingPolicy
from humanline.store.port import DuplicateKey, PolicySource, StoredPolicy
from humanline.store.sql.repositories import SqlConnection, _rowcount
from humanline.store.sql.tables import routing_policies

_DEFAULTS = RoutingPolicy("", target=timedelta(seconds=1))


def policy_document(policy: RoutingPolicy) -> dict[str, Any]:
    """The JSON document stored for `policy`."""
    return {
        "target": policy.target.total_seconds(),
        # A list, not an object: JSONB does not keep an object's key order.
        "required_skills": [[s.skill, s.min_proficiency] for s in policy.required_skills],
        "min_proficiency": policy.min_proficiency,
        "risk_class": policy.risk_class.name,
        "offer_timeout": (
            None if policy.offer_timeout is None else policy.offer_timeout.total_seconds()
        ),
        "max_wait": policy.max_wait.total_seconds(),
        "relaxation": [
            {
                "after": step.after.total_seconds(),
                "min_proficiency": step.min_proficiency,
                "drop_optional": step.drop_optional,
            }
            for step in policy.relaxation
        ],
        "quality_ranking": policy.quality_ranking,
        "known_agent_wait": policy.known_agent_wait.total_seconds(),
        "agent_order": policy.agent_order.value,
        "expert_level": policy.expert_level,
        "expert_delay": policy.expert_delay.total_seconds(),
    }


def _seconds(document: dict[str, Any], key: str, default: timedelta) -> timedelta:
    value = document.get(key)
    return default if value is None else timedelta(seconds=float(value))


def policy_from_document(interaction_type: str, document: dict[str, Any]) -> RoutingPolicy:
    """The policy a stored document describes."""
    return RoutingPolicy(
        interaction_type,
        target=_seconds(document, "target", _DEFAULTS.target),
        required_skills=tuple(
            SkillRequirement(skill, int(level))
            for skill, level in document.get("required_skills", [])
        ),
        min_proficiency=int(document.get("min_proficiency", _DEFAULTS.min_proficiency)),
        risk_class=RiskClass[document.get("risk_class", _DEFAULTS.risk_class.name)],
        offer_timeout=(
            None
            if document.get("offer_timeout") is None
            else timedelta(seconds=float(document["offer_timeout"]))
        ),
        max_wait=_seconds(document, "max_wait", _DEFAULTS.max_wait),
        relaxation=tuple(
            RelaxationStep(
                timedelta(seconds=float(step["after"])),
                step.get("min_proficiency"),
                bool(step.get("drop_optional", False)),
            )
            for step in document.get("relaxation", [])
        ),
        quality_ranking=bool(document.get("quality_ranking", _DEFAULTS.quality_ranking)),
        known_agent_wait=_seconds(document, "known_agent_wait", _DEFAULTS.known_agent_wait),
        agent_order=AgentOrder(document.get("agent_order", _DEFAULTS.agent_order.value)),
        expert_level=document.get("expert_level"),
        expert_delay=_seconds(document, "expert_delay", _DEFAULTS.expert_delay),
    )


def _stored(row: Any) -> StoredPolicy:
    return StoredPolicy(
        policy_from_document(row.interaction_type, row.policy),
        PolicySource(row.source),
        row.created_at,
        row.updated_at,
    )


class SqlRoutingPolicyRepository:
    """Routing policies, on the transaction's clock."""

    def __init__(self, conn: SqlConnection, now: datetime) -> None:
        self._conn = conn
        self._now = now

    async def all(self) -> list[StoredPolicy]:
        result = await self._conn.execute(
            sa.select(routing_policies).order_by(routing_policies.c.interaction_type)
        )
        return [_stored(row) for row in result.all()]

    async def get(self, interaction_type: str) -> StoredPolicy | None:
        result = await self._conn.execute(
            sa.select(routing_policies).where(
                routing_policies.c.interaction_type == interaction_type
            )
        )
        row = result.first()
        return None if row is None else _stored(row)

    async def insert(self, policy: RoutingPolicy, source: PolicySource) -> StoredPolicy:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(
                    sa.insert(routing_policies).values(
                        interaction_type=policy.interaction_type,
                        policy=policy_document(policy),
                        source=source.value,
                        created_at=self._now,
                        updated_at=self._now,
                    )
                )
        except IntegrityError as exc:
            raise DuplicateKey(policy.interaction_type) from exc
        return StoredPolicy(policy, source, self._now, self._now)

    async def update(self, policy: RoutingPolicy, source: PolicySource) -> StoredPolicy | None:
        stmt = (
            sa.update(routing_policies)
            .where(routing_policies.c.interaction_type == policy.interaction_type)
            .values(policy=policy_document(policy), source=source.value, updated_at=self._now)
        )
        if _rowcount(await self._conn.execute(stmt)) != 1:
            return None
        return await self.get(policy.interaction_type)

    async def delete(self, interaction_type: str) -> bool:
        stmt = sa.delete(routing_policies).where(
            routing_policies.c.interaction_type == interaction_type
        )
        return _rowcount(await self._conn.execute(stmt)) == 1
