"""PoolService: ops manage agents, watch the pool, read quality and its early warnings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_status import rpc_status

from humanline.domain.access import Principal, Role
from humanline.grpc import converters
from humanline.grpc.auth import Gate
from humanline.grpc.errors import SHUTTING_DOWN, abort, rich_status, server_stream, unary
from humanline.service.app import Humanline
from humanline.service.events import ServiceClosing
from humanline.v1 import pool_service_pb2 as pb
from humanline.v1 import pool_service_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class PoolServicer(pool_service_pb2_grpc.PoolServiceServicer):
    """PoolService on the dispatch service."""

    def __init__(self, app: Humanline, gate: Gate) -> None:
        self._app = app
        self.gate = gate

    @unary(Role.OPS)
    async def CreateAgent(
        self, request: pb.CreateAgentRequest, context: Context, caller: Principal
    ) -> pb.CreateAgentResponse:
        agent_id, profile = converters.create_agent(request)
        agent = await self._app.pool.create_agent(agent_id, profile)
        return pb.CreateAgentResponse(agent=converters.agent_pb(agent))

    @unary(Role.OPS)
    async def UpdateAgent(
        self, request: pb.UpdateAgentRequest, context: Context, caller: Principal
    ) -> pb.UpdateAgentResponse:
        agent_id = converters.agent_id("agent.agent_id", request.agent.agent_id)
        update = converters.profile_update(request)
        agent = await self._app.pool.update_agent(agent_id, update)
        return pb.UpdateAgentResponse(agent=converters.agent_pb(agent))

    @unary(Role.OPS)
    async def GetAgent(
        self, request: pb.GetAgentRequest, context: Context, caller: Principal
    ) -> pb.GetAgentResponse:
        agent = await self._app.pool.get_agent(converters.agent_id("agent_id", request.agent_id))
        return pb.GetAgentResponse(agent=converters.agent_pb(agent))

    @unary(Role.OPS)
    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: Context, caller: Principal
    ) -> pb.ListAgentsResponse:
        state, skill = converters.list_filter(request)
        page = await self._app.pool.list_agents(
            page_size=request.page_size, page_token=request.page_token, state=state, skill=skill
        )
        return pb.ListAgentsResponse(
            agents=[converters.agent_pb(a) for a in page.agents],
            next_page_token=page.next_page_token,
        )

    @unary(Role.OPS)
    async def DeleteAgent(
        self, request: pb.DeleteAgentRequest, context: Context, caller: Principal
    ) -> pb.DeleteAgentResponse:
        await self._app.pool.delete_agent(converters.agent_id("agent_id", request.agent_id))
        return pb.DeleteAgentResponse()

    @unary(Role.OPS)
    async def GetPoolStatus(
        self, request: pb.GetPoolStatusRequest, context: Context, caller: Principal
    ) -> pb.GetPoolStatusResponse:
        status = await self._app.pool.status(converters.pool_status_horizon(request))
        return pb.GetPoolStatusResponse(status=converters.pool_status_pb(status))

    @server_stream(Role.OPS)
    async def WatchPoolStatus(
        self, request: pb.WatchPoolStatusRequest, context: Context, caller: Principal
    ) -> AsyncIterator[pb.WatchPoolStatusResponse]:
        horizon, min_interval = converters.pool_watch(request)
        try:
            with self.gate.streams.hold(context.peer()):
                async for status in self._app.pool_feed.watch(horizon, min_interval):
                    yield pb.WatchPoolStatusResponse(status=converters.pool_status_pb(status))
        except ServiceClosing:
            # Ends with the status as the handler returns, rather than with abort(): a
            # client that left just before (its call is gone) is then nobody's error.
            status = rpc_status.to_status(rich_status(SHUTTING_DOWN))
            context.set_code(status.code)
            context.set_details(status.details)
            context.set_trailing_metadata(status.trailing_metadata)

    @unary(Role.OPS)
    async def GetQualityReport(
        self, request: pb.GetQualityReportRequest, context: Context, caller: Principal
    ) -> pb.GetQualityReportResponse:
        query = converters.quality_query(request)
        found = await self._app.pool.quality(
            query.by, query.since, query.until, query.interaction_type
        )
        return converters.quality_report_pb(found)

    @server_stream(Role.OPS)
    async def ExportOutcomes(
        self, request: pb.ExportOutcomesRequest, context: Context, caller: Principal
    ) -> AsyncIterator[pb.ExportOutcomesResponse]:
        asked = converters.export_query(request)
        with self.gate.streams.hold(context.peer()):
            async for handoff in self._app.pool.export(asked.query, asked.since, asked.until):
                yield converters.exported_pb(handoff)

    @server_stream(Role.OPS)
    async def WatchQualityAlerts(
        self, request: pb.WatchQualityAlertsRequest, context: Context, caller: Principal
    ) -> AsyncIterator[pb.WatchQualityAlertsResponse]:
        try:
            with self.gate.streams.hold(context.peer()):
                async for event in self._app.quality.watch():
                    yield pb.WatchQualityAlertsResponse(
                        alert=converters.quality_alert_pb(event.alert),
                        cleared=event.cleared,
                        event_time=converters.timestamp(event.at),
                    )
        except ServiceClosing:
            await abort(context, SHUTTING_DOWN)

    @unary(Role.OPS)
    async def CreateRoutingPolicy(
        self, request: pb.CreateRoutingPolicyRequest, context: Context, caller: Principal
    ) -> pb.CreateRoutingPolicyResponse:
        interaction_type, changes = converters.policy_changes(request.policy, None)
        created = await self._app.policies.create(interaction_type, changes)
        return pb.CreateRoutingPolicyResponse(policy=converters.routing_policy_pb(created))

    @unary(Role.OPS)
    async def UpdateRoutingPolicy(
        self, request: pb.UpdateRoutingPolicyRequest, context: Context, caller: Principal
    ) -> pb.UpdateRoutingPolicyResponse:
        interaction_type, changes = converters.policy_changes(
            request.policy, list(request.update_mask.paths)
        )
        updated = await self._app.policies.update(interaction_type, changes)
        return pb.UpdateRoutingPolicyResponse(policy=converters.routing_policy_pb(updated))

    @unary(Role.OPS)
    async def GetRoutingPolicy(
        self, request: pb.GetRoutingPolicyRequest, context: Context, caller: Principal
    ) -> pb.GetRoutingPolicyResponse:
        found = await self._app.policies.get(
            converters.identifier("interaction_type", request.interaction_type)
        )
        return pb.GetRoutingPolicyResponse(policy=converters.routing_policy_pb(found))

    @unary(Role.OPS)
    async def ListRoutingPolicies(
        self, request: pb.ListRoutingPoliciesRequest, context: Context, caller: Principal
    ) -> pb.ListRoutingPoliciesResponse:
        policies = await self._app.policies.list()
        return pb.ListRoutingPoliciesResponse(
            policies=[converters.routing_policy_pb(p) for p in policies]
        )

    @unary(Role.OPS)
    async def DeleteRoutingPolicy(
        self, request: pb.DeleteRoutingPolicyRequest, context: Context, caller: Principal
    ) -> pb.DeleteRoutingPolicyResponse:
        now = await self._app.policies.delete(
            converters.identifier("interaction_type", request.interaction_type)
        )
        return pb.DeleteRoutingPolicyResponse(policy=converters.routing_policy_pb(now))
