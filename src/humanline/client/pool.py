"""`PoolClient`: what ops call to manage the agent pool, watch it, and read its quality.

    async with PoolClient(token=ops_token) as pool:
        await pool.create_agent("alice", display_name="Alice", skills={"billing": 4})
        status = await pool.pool_status()
        async for agent in pool.list_agents(state="available"):
            ...

Results are the API's own messages (`humanline.v1.*_pb2`, typed); arguments are plain
Python, with enum values by their short names (`state="available"`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Literal

from google.protobuf import field_mask_pb2

from humanline.client.connection import Client, duration, enum_value, skill_levels, timestamp
from humanline.v1 import (
    agent_pb2,
    handoff_pb2,
    pool_service_pb2,
    pool_service_pb2_grpc,
    quality_pb2,
    routing_pb2,
)

Agent = agent_pb2.Agent
PoolStatus = pool_service_pb2.PoolStatus
QualityReport = pool_service_pb2.GetQualityReportResponse
QualityAlertEvent = pool_service_pb2.WatchQualityAlertsResponse
ExportedOutcome = pool_service_pb2.ExportOutcomesResponse
RoutingPolicy = routing_pb2.RoutingPolicy

StateName = Literal["offline", "available", "away", "busy", "reconnecting"]
DimensionName = Literal["interaction_type", "agent", "skill", "risk_class"]
OutcomeName = Literal["resolved", "unresolved", "transferred", "follow_up_needed"]


class PoolClient(Client):
    """PoolService for ops (a token with the ops role)."""

    @cached_property
    def _stub(self) -> pool_service_pb2_grpc.PoolServiceStub:
        return pool_service_pb2_grpc.PoolServiceStub(self.channel)

    # Agents

    async def create_agent(
        self,
        agent_id: str,
        *,
        display_name: str = "",
        skills: Mapping[str, int] | None = None,
        languages: Iterable[str] = (),
        capacity: int = 0,
    ) -> Agent:
        """Adds an agent to the pool (offline until its app connects). `skills` maps each
        skill to the agent's proficiency, 1-5; `capacity` is how many interactions it holds
        at once, 1-20 (0: one). ALREADY_EXISTS if the id is taken."""
        agent = _agent(display_name, skills, languages, capacity)
        request = pool_service_pb2.CreateAgentRequest(agent_id=agent_id, agent=agent)
        response: pool_service_pb2.CreateAgentResponse = await self._unary(
            self._stub.CreateAgent, request
        )
        return response.agent

    async def update_agent(
        self,
        agent_id: str,
        *,
        display_name: str | None = None,
        skills: Mapping[str, int] | None = None,
        languages: Iterable[str] | None = None,
        capacity: int | None = None,
    ) -> Agent:
        """Changes the fields given (and only those); returns the agent as it now is."""
        agent = _agent(display_name or "", skills, languages or (), capacity or 0)
        agent.agent_id = agent_id
        paths = [
            name
            for name, value in (
                ("display_name", display_name),
                ("skills", skills),
                ("languages", languages),
                ("capacity", capacity),
            )
            if value is not None
        ]
        request = pool_service_pb2.UpdateAgentRequest(
            agent=agent, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        response: pool_service_pb2.UpdateAgentResponse = await self._unary(
            self._stub.UpdateAgent, request
        )
        return response.agent

    async def get_agent(self, agent_id: str) -> Agent:
        """The agent now: its state, load and skills."""
        request = pool_service_pb2.GetAgentRequest(agent_id=agent_id)
        response: pool_service_pb2.GetAgentResponse = await self._unary(
            self._stub.GetAgent, request
        )
        return response.agent

    async def list_agents(
        self,
        *,
        state: StateName | int | None = None,
        skill: str = "",
        page_size: int = 200,
    ) -> AsyncIterator[Agent]:
        """Every agent (in `state`, with `skill`, when given), fetching page after page."""
        request = pool_service_pb2.ListAgentsRequest(page_size=page_size, skill=skill)
        if state is not None:
            request.state = enum_value(agent_pb2.AgentState, "AGENT_STATE_", state)  # type: ignore[assignment]
        while True:
            page = await self._unary(self._stub.ListAgents, request)
            for agent in page.agents:
                yield agent
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def delete_agent(self, agent_id: str) -> None:
        """Removes an agent that is offline and holds no work (FAILED_PRECONDITION
        otherwise); its history stays for reports and its id cannot be used again."""
        request = pool_service_pb2.DeleteAgentRequest(agent_id=agent_id)
        await self._unary(self._stub.DeleteAgent, request)

    # The pool's status

    async def pool_status(self, *, at_risk_horizon: float | timedelta | None = None) -> PoolStatus:
        """Agents by state and skill, free capacity, the queue by urgency and type, the
        oldest wait, and the handoffs at risk of missing their target (due within
        `at_risk_horizon`, 15 s unless given)."""
        request = pool_service_pb2.GetPoolStatusRequest(at_risk_horizon=duration(at_risk_horizon))
        response: pool_service_pb2.GetPoolStatusResponse = await self._unary(
            self._stub.GetPoolStatus, request
        )
        return response.status

    async def watch_pool_status(
        self,
        *,
        at_risk_horizon: float | timedelta | None = None,
        min_interval: float | timedelta | None = None,
    ) -> AsyncIterator[PoolStatus]:
        """The status now, then again whenever it changes, at most once per `min_interval`
        (1 s unless given); for dashboards. Runs until you stop iterating."""
        request = pool_service_pb2.WatchPoolStatusRequest(
            at_risk_horizon=duration(at_risk_horizon), min_interval=duration(min_interval)
        )
        async for update in self._stream(self._stub.WatchPoolStatus, request):
            yield update.status

    # Quality

    async def quality_report(
        self,
        *,
        group_by: DimensionName | int = "interaction_type",
        start: datetime | None = None,
        end: datetime | None = None,
        interaction_type: str = "",
    ) -> QualityReport:
        """Resolution, CSAT, time to agent, abandonment and offer acceptance per group (by
        interaction type, agent, skill or risk class) and overall, for handoffs created in
        [start, end) (the day before `end`, and now, unless given); with the early
        warnings."""
        request = pool_service_pb2.GetQualityReportRequest(
            group_by=enum_value(quality_pb2.QualityDimension, "QUALITY_DIMENSION_", group_by),  # type: ignore[arg-type]
            start_time=timestamp(start),
            end_time=timestamp(end),
            interaction_type=interaction_type,
        )
        report: QualityReport = await self._unary(self._stub.GetQualityReport, request)
        return report

    async def watch_quality_alerts(self) -> AsyncIterator[QualityAlertEvent]:
        """Each quality alert as it is raised (`cleared` False) or cleared; the alerts open
        now come first."""
        request = pool_service_pb2.WatchQualityAlertsRequest()
        async for event in self._stream(self._stub.WatchQualityAlerts, request):
            yield event

    async def export_outcomes(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        interaction_type: str = "",
        outcomes: Iterable[OutcomeName | int] = (),
        only_failures: bool = False,
        max_csat: int = 0,
    ) -> AsyncIterator[ExportedOutcome]:
        """Completed handoffs with their outcomes, notes and ratings, for retraining the bot:
        completed in [start, end) (the last day unless given), oldest first."""
        request = pool_service_pb2.ExportOutcomesRequest(
            start_time=timestamp(start),
            end_time=timestamp(end),
            interaction_type=interaction_type,
            outcomes=[enum_value(handoff_pb2.Outcome, "OUTCOME_", o) for o in outcomes],  # type: ignore[misc]
            only_failures=only_failures,
            max_csat=max_csat,
        )
        async for record in self._stream(self._stub.ExportOutcomes, request):
            yield record

    # Routing policies

    async def create_routing_policy(self, policy: RoutingPolicy) -> RoutingPolicy:
        """Adds the routing policy of an interaction type (ALREADY_EXISTS if it has one)."""
        request = pool_service_pb2.CreateRoutingPolicyRequest(policy=policy)
        response: pool_service_pb2.CreateRoutingPolicyResponse = await self._unary(
            self._stub.CreateRoutingPolicy, request
        )
        return response.policy

    async def update_routing_policy(
        self, policy: RoutingPolicy, fields: Iterable[str]
    ) -> RoutingPolicy:
        """Changes the named `fields` of the policy of `policy.interaction_type`."""
        request = pool_service_pb2.UpdateRoutingPolicyRequest(
            policy=policy, update_mask=field_mask_pb2.FieldMask(paths=list(fields))
        )
        response: pool_service_pb2.UpdateRoutingPolicyResponse = await self._unary(
            self._stub.UpdateRoutingPolicy, request
        )
        return response.policy

    async def get_routing_policy(self, interaction_type: str) -> RoutingPolicy:
        """The policy in force for `interaction_type` ("default": the fallback); NOT_FOUND
        when the fallback routes it."""
        request = pool_service_pb2.GetRoutingPolicyRequest(interaction_type=interaction_type)
        response: pool_service_pb2.GetRoutingPolicyResponse = await self._unary(
            self._stub.GetRoutingPolicy, request
        )
        return response.policy

    async def list_routing_policies(self) -> list[RoutingPolicy]:
        """Every routing policy."""
        request = pool_service_pb2.ListRoutingPoliciesRequest()
        return list((await self._unary(self._stub.ListRoutingPolicies, request)).policies)

    async def delete_routing_policy(self, interaction_type: str) -> RoutingPolicy:
        """Removes the policy set for a type; returns the policy in force for it now (its
        built-in one, or the fallback). NOT_FOUND when nothing was set for it."""
        request = pool_service_pb2.DeleteRoutingPolicyRequest(interaction_type=interaction_type)
        response: pool_service_pb2.DeleteRoutingPolicyResponse = await self._unary(
            self._stub.DeleteRoutingPolicy, request
        )
        return response.policy


def _agent(
    display_name: str, skills: Mapping[str, int] | None, languages: Iterable[str], capacity: int
) -> Agent:
    return agent_pb2.Agent(
        display_name=display_name,
        skills=[agent_pb2.AgentSkill(skill=s, proficiency=p) for s, p in skill_levels(skills)],
        languages=list(languages),
        capacity=capacity,
    )
