"""TLS on the listener, and mutual TLS for bots and ops, over real gRPC.

With a certificate and key the listener speaks TLS only. With a client CA as well, a second
listener requires client certificates signed by it; bots and ops must then call through it
with a certificate naming them (its common name is the bot's id or the operator's name), so
that a stolen token alone lets nobody in. Agents' apps, on their own devices, keep using the
first listener with their tokens alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from humanline.domain.rules import DispatchPolicy
from humanline.grpc.server import Tls
from humanline.v1 import handoff_service_pb2
from tests.conftest import Served, serve
from tests.support.certs import Authority, Pem
from tests.support.client import TEST_BOT, AgentDriver, Stubs, error_details


@pytest.fixture
def authority() -> Authority:
    return Authority()


def _served(tmp_path: Path, policy: DispatchPolicy, tls: Tls) -> AsyncIterator[Served]:
    async def run() -> AsyncIterator[Served]:
        served = await serve(f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}", policy, tls=tls)
        yield served
        await served.stop()

    return run()


@pytest.fixture
async def tls_served(
    tmp_path: Path, policy: DispatchPolicy, authority: Authority
) -> AsyncIterator[Served]:
    server = authority.issue("localhost", server=True)
    async for served in _served(tmp_path, policy, Tls(server.cert, server.key)):
        yield served


@pytest.fixture
async def mtls_served(
    tmp_path: Path, policy: DispatchPolicy, authority: Authority
) -> AsyncIterator[Served]:
    server = authority.issue("localhost", server=True)
    tls = Tls(server.cert, server.key, authority.cert, "127.0.0.1:0")
    async for served in _served(tmp_path, policy, tls):
        yield served


def _stubs(
    served: Served,
    authority: Authority,
    *,
    port: int | None = None,
    client: Pem | None = None,
    bot_id: str = TEST_BOT,
) -> Stubs:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=authority.cert,
        private_key=None if client is None else client.key,
        certificate_chain=None if client is None else client.cert,
    )
    target = f"127.0.0.1:{port or served.running.port}"
    return Stubs.connect(target, served.keys, bot_id=bot_id, tls=credentials)


async def test_the_listener_speaks_tls_only(tls_served: Served, authority: Authority) -> None:
    secure = _stubs(tls_served, authority)
    await secure.create_agent("ann")
    handoff = await secure.request_handoff()
    assert (await secure.get_handoff(handoff.handoff_id)).handoff_id == handoff.handoff_id
    ann = AgentDriver(secure, "ann")
    assert (await ann.hello()).agent.agent_id == "ann"
    ann.leave()

    plain = tls_served.stubs()  # plain text to a TLS port: no connection
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plain.pool_status()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    untrusted = _stubs(tls_served, Authority("someone else"))  # a server it cannot verify
    with pytest.raises(grpc.aio.AioRpcError) as unverified:
        await untrusted.pool_status()
    assert unverified.value.code() == grpc.StatusCode.UNAVAILABLE
    for stubs in (secure, plain, untrusted):
        await stubs.close()


async def test_bots_and_ops_call_with_a_certificate_naming_them(
    mtls_served: Served, authority: Authority
) -> None:
    served = mtls_served
    mtls_port = served.running.mtls_port
    assert mtls_port is not None
    # The bot and ops, each with a certificate of its own name, on the mutual-TLS listener.
    bot = _stubs(served, authority, port=mtls_port, client=authority.issue(TEST_BOT))
    ops = _stubs(served, authority, port=mtls_port, client=authority.issue("ops"))
    handoff = await bot.request_handoff()
    await ops.create_agent("ann")
    assert (await bot.get_handoff(handoff.handoff_id)).handoff_id == handoff.handoff_id
    assert (await ops.pool_status()).agents_by_state

    # An agent's app on the TLS listener, with its token alone.
    app = _stubs(served, authority)
    ann = AgentDriver(app, "ann")
    await ann.hello()
    offer = await ann.offer()
    interaction = await ann.accept(offer.offer_id)
    await app.complete("ann", interaction.interaction_id)
    ann.leave()

    # A bot's valid token without a certificate (on the TLS listener): not enough.
    with pytest.raises(grpc.aio.AioRpcError) as no_certificate:
        await app.request_handoff()
    assert no_certificate.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(no_certificate.value)["reason"] == "CLIENT_CERTIFICATE_REQUIRED"
    with pytest.raises(grpc.aio.AioRpcError) as ops_without:
        await app.pool_status()
    assert error_details(ops_without.value)["reason"] == "CLIENT_CERTIFICATE_REQUIRED"

    # Another bot's certificate with this bot's token: refused.
    stolen = _stubs(served, authority, port=mtls_port, client=authority.issue("other-bot"))
    with pytest.raises(grpc.aio.AioRpcError) as mismatch:
        await stolen.handoffs.GetHandoff(
            handoff_service_pb2.GetHandoffRequest(handoff_id=handoff.handoff_id)
        )
    assert mismatch.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(mismatch.value)["reason"] == "CERTIFICATE_MISMATCH"

    # The mutual-TLS listener lets no connection in without a certificate its CA signed.
    for client in (None, Authority("someone else").issue(TEST_BOT)):
        outsider = _stubs(served, authority, port=mtls_port, client=client)
        with pytest.raises(grpc.aio.AioRpcError) as handshake:
            await outsider.request_handoff()
        assert handshake.value.code() == grpc.StatusCode.UNAVAILABLE
        await outsider.close()
    for stubs in (bot, ops, app, stolen):
        await stubs.close()
