"""Bearer tokens on every call of a channel, chosen by the call.

A program that plays several kinds of caller over one channel (the simulator and the bench
play ops, bots and agents; tests do too) attaches to each call the token of the caller that
makes it: PoolService calls carry ops' token, HandoffService calls the bot's, and
CompleteInteraction the token of the agent it names. An agent's Connect stream names its
agent only in its first message, after the call has begun, so its caller passes the
agent's token itself (`metadata_for`); a call that carries an authorization already is left
as it is.

`Minter` makes those tokens from a keyring that can sign (the programs here run beside the
server, with its keyring); a deployment's clients get theirs from `humanline token issue`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from humanline.domain.access import Principal, Role
from humanline.tokens import KeyRing

POOL = "/humanline.v1.PoolService/"
HANDOFFS = "/humanline.v1.HandoffService/"
COMPLETE = "/humanline.v1.AgentService/CompleteInteraction"

Metadata = tuple[tuple[str, str], ...]


class Minter:
    """Tokens from a keyring, one per principal, made once."""

    def __init__(self, keys: KeyRing, *, bot_id: str = "bot", ops_name: str = "ops") -> None:
        self._keys = keys
        self.bot_id = bot_id
        self.ops_name = ops_name
        self._tokens: dict[Principal, str] = {}

    def token(self, principal: Principal) -> str:
        token = self._tokens.get(principal)
        if token is None:
            token = self._tokens[principal] = self._keys.issue(principal)
        return token

    def metadata_for(self, principal: Principal) -> Metadata:
        """The call metadata that authenticates `principal`."""
        return (("authorization", f"Bearer {self.token(principal)}"),)

    def agent(self, agent_id: str) -> Metadata:
        return self.metadata_for(Principal(Role.AGENT, agent_id))

    def for_call(self, method: str, request: Any) -> Metadata:
        """The metadata for a call of `method` with `request` (a unary one); none for an
        agent's stream, whose opener authenticates it."""
        if method.startswith(POOL):
            return self.metadata_for(Principal(Role.OPS, self.ops_name))
        if method.startswith(HANDOFFS):
            return self.metadata_for(Principal(Role.BOT, self.bot_id))
        if method == COMPLETE and request is not None:
            try:
                return self.agent(request.agent_id)
            except ValueError:  # no agent has that id: no token says it is one
                return ()
        return ()


def _with(details: Any, extra: Metadata) -> Any:
    metadata = list(details.metadata or ())
    if not extra or any(key == "authorization" for key, _ in metadata):
        return details
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata, *extra),
        details.credentials,
        details.wait_for_ready,
    )


def _method(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class _Picks:
    def __init__(self, pick: Callable[[str, Any], Metadata]) -> None:
        self._pick = pick

    def details(self, details: Any, request: Any) -> Any:
        return _with(details, self._pick(_method(details), request))


# grpc.aio files an interceptor under one kind of call only: one class per kind.
class _UnaryUnary(_Picks, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.details(details, request), request)


class _UnaryStream(_Picks, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.details(details, request), request)


class _StreamStream(_Picks, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self.details(details, None), request_iterator)


def channel(
    target: str,
    minter: Minter | None,
    *,
    tls: grpc.ChannelCredentials | None = None,
    **kwargs: Any,
) -> grpc.aio.Channel:
    """A channel to `target` whose calls carry `minter`'s tokens (none without one: a
    server started without authentication); over TLS with `tls` (`grpc.ssl_channel_credentials`,
    with a client certificate for mutual TLS), else in plain text."""
    interceptors: list[Any] = []
    if minter is not None:
        interceptors = [
            kind(minter.for_call) for kind in (_UnaryUnary, _UnaryStream, _StreamStream)
        ]
    if tls is not None:
        return grpc.aio.secure_channel(target, tls, interceptors=interceptors, **kwargs)
    return grpc.aio.insecure_channel(target, interceptors=interceptors, **kwargs)
