"""HandoffService: bots request a human, follow the handoff, cancel it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from humanline.grpc import converters
from humanline.grpc.errors import SHUTTING_DOWN, abort, server_stream, unary
from humanline.service.app import Humanline
from humanline.service.events import ServiceClosing
from humanline.v1 import handoff_service_pb2 as pb
from humanline.v1 import handoff_service_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class HandoffServicer(handoff_service_pb2_grpc.HandoffServiceServicer):
    """HandoffService on the dispatch service."""

    def __init__(self, app: Humanline) -> None:
        self._app = app

    @unary
    async def RequestHandoff(
        self, request: pb.RequestHandoffRequest, context: Context
    ) -> pb.RequestHandoffResponse:
        view = await self._app.handoffs.request(converters.handoff_request(request))
        return pb.RequestHandoffResponse(handoff=converters.handoff_pb(view))

    @unary
    async def GetHandoff(
        self, request: pb.GetHandoffRequest, context: Context
    ) -> pb.GetHandoffResponse:
        handoff_id = converters.uuid_id("handoff_id", request.handoff_id)
        view = await self._app.handoffs.get(handoff_id)
        return pb.GetHandoffResponse(handoff=converters.handoff_pb(view))

    @server_stream
    async def WatchHandoff(
        self, request: pb.WatchHandoffRequest, context: Context
    ) -> AsyncIterator[pb.WatchHandoffResponse]:
        handoff_id = converters.uuid_id("handoff_id", request.handoff_id)
        try:
            async for view in self._app.handoffs.watch(handoff_id):
                yield pb.WatchHandoffResponse(handoff=converters.handoff_pb(view))
        except ServiceClosing:
            await abort(context, SHUTTING_DOWN)

    @unary
    async def CancelHandoff(
        self, request: pb.CancelHandoffRequest, context: Context
    ) -> pb.CancelHandoffResponse:
        handoff_id = converters.uuid_id("handoff_id", request.handoff_id)
        view = await self._app.handoffs.cancel(handoff_id)
        return pb.CancelHandoffResponse(handoff=converters.handoff_pb(view))
