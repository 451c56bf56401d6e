"""Servicers registered with the server, with request bytes that do not parse refused.

grpc's generated `add_*Servicer_to_server` parse each request with the message's
`FromString`; bytes that are not a valid message make grpc end the call UNKNOWN. Here each
method's handler is built from the service's descriptor instead, with a parser that turns
such bytes into `MALFORMED`: a unary or server-streaming call then ends INVALID_ARGUMENT
(reason MALFORMED_MESSAGE) before its handler runs, and a client stream (an agent's session)
hands the marker to its handler, which refuses that one message and keeps the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from humanline.domain.errors import FieldViolation, InvalidArgument
from humanline.grpc.errors import abort

Context = grpc.aio.ServicerContext[Any, Any]


class Malformed:
    """What a request that did not parse is handed on as."""

    __slots__ = ()


MALFORMED = Malformed()


def is_malformed(request: object) -> bool:
    """Whether a client stream's message is the marker of bytes that did not parse."""
    return request is MALFORMED


MALFORMED_ERROR = InvalidArgument(
    [FieldViolation("request", "is not a valid protobuf message of the method's request type")],
    reason="MALFORMED_MESSAGE",
)


def _parser(cls: type[message.Message]) -> Callable[[bytes], Any]:
    parse = cls.FromString

    def parse_or_mark(data: bytes) -> Any:
        try:
            return parse(data)
        except message.DecodeError:
            return MALFORMED

    return parse_or_mark


def _unary_behavior(method: Callable[..., Any]) -> Callable[..., Any]:
    async def behavior(request: Any, context: Context) -> Any:
        if request is MALFORMED:
            await abort(context, MALFORMED_ERROR)
        return await method(request, context)

    return behavior


def _server_stream_behavior(method: Callable[..., Any]) -> Callable[..., Any]:
    async def behavior(request: Any, context: Context) -> AsyncIterator[Any]:
        if request is MALFORMED:
            await abort(context, MALFORMED_ERROR)
        async for item in method(request, context):
            yield item

    return behavior


def _handler(method: MethodDescriptor, behavior: Callable[..., Any]) -> Any:
    parse = _parser(message_factory.GetMessageClass(method.input_type))
    serialize = message_factory.GetMessageClass(method.output_type).SerializeToString
    match method.client_streaming, method.server_streaming:
        case False, False:
            return grpc.unary_unary_rpc_method_handler(_unary_behavior(behavior), parse, serialize)
        case False, True:
            return grpc.unary_stream_rpc_method_handler(
                _server_stream_behavior(behavior), parse, serialize
            )
        case True, False:
            return grpc.stream_unary_rpc_method_handler(behavior, parse, serialize)
        case _:
            return grpc.stream_stream_rpc_method_handler(behavior, parse, serialize)


def add_service(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> None:
    """Serves every method of `service` with `servicer`'s method of the same name."""
    handlers = {m.name: _handler(m, getattr(servicer, m.name)) for m in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
