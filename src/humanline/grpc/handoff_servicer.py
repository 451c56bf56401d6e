"""HandoffService: bots request a human, follow the handoff, cancel it, and report what the
customer made of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from humanline.domain.access import Principal, Role
from humanline.grpc import converters
from humanline.grpc.auth import Gate
from humanline.grpc.errors import SHUTTING_DOWN, abort, server_stream, unary
from humanline.service.app import Humanline
from humanline.service.events import ServiceClosing
from humanline.v1 import handoff_service_pb2 as pb
from humanline.v1 import handoff_service_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class HandoffServicer(handoff_service_pb2_grpc.HandoffServiceServicer):
    """HandoffService on the dispatch service."""

    def __init__(self, app: Humanline, gate: Gate) -> None:
        self._app = app
        self.gate = gate

    @unary(Role.BOT)
    async def RequestHandoff(
        self, request: pb.RequestHandoffRequest, context: Context, caller: Principal
    ) -> pb.RequestHandoffResponse:
        handoff = converters.handoff_request(request)
        view = await self._app.handoffs.request(handoff, caller.subject)
        return pb.RequestHandoffResponse(handoff=converters.handoff_pb(view))

    @unary(Role.BOT, Role.OPS)
    async def GetHandoff(
        self, request: pb.GetHandoffRequest, context: Context, caller: Principal
    ) -> pb.GetHandoffResponse:
        handoff_id = converters.uuid_id("handoff_id", request.handoff_id)
        view = await self._app.handoffs.get(handoff_id, caller)
        return pb.GetHandoffResponse(handoff=converters.handoff_pb(view))

    @server_stream(Role.BOT, Role.OPS)
    async def WatchHandoff(
        self, request: pb.WatchHandoffRequest, context: Context, caller: Principal
    ) -> AsyncIterator[pb.WatchHandoffResponse]:
        handoff_id = converters.uuid_id("handoff_id", request.handoff_id)
        try:
            with self.gate.streams.hold(context.peer()):
                async for view in self._app.handoffs.watch(handoff_id, caller):
                    yield pb.WatchHandoffResponse(handoff=converters.handoff_pb(view))
        except ServiceClosing:
            await abort(context, SHUTTING_DOWN)

    @unary(Role.BOT, Role.OPS)
    async def CancelHandoff(
        self, request: pb.CancelHandoffRequest, context: Context, caller: Principal
    ) -> pb.CancelHandoffResponse:
        handoff_id = converters.uuid_id("handoff_id", request.handoff_id)
        view = await self._app.handoffs.cancel(handoff_id, caller)
        return pb.CancelHandoffResponse(handoff=converters.handoff_pb(view))

    @unary(Role.BOT, Role.OPS)
    async def RecordFeedback(
        self, request: pb.RecordFeedbackRequest, context: Context, caller: Principal
    ) -> pb.RecordFeedbackResponse:
        handoff_id, feedback = converters.feedback(request)
        view = await self._app.handoffs.record_feedback(handoff_id, feedback, caller)
        return pb.RecordFeedbackResponse(handoff=converters.handoff_pb(view))
