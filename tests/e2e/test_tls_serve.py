"""`humanline serve` with TLS and mutual TLS from its settings, driven from this process: the
banner says what it listens on, an agent's app uses the TLS port with its token, a bot the
mutual-TLS port with its certificate; and settings that do not fit together stop the start
with one clear line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.process import KEYS, StartServer, free_port
from tests.support.certs import Authority
from tests.support.client import TEST_BOT, Stubs, error_details

pytestmark = pytest.mark.e2e


async def _serving(target: str, credentials: grpc.ChannelCredentials) -> None:
    async with grpc.aio.secure_channel(target, credentials) as channel:
        for _ in range(100):
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
    pytest.fail(f"{target} never answered SERVING over TLS")


async def test_serve_with_tls_and_mutual_tls_from_settings(
    start_server: StartServer, tmp_path: Path
) -> None:
    workdir = tmp_path
    ca = Authority()
    cert, key = ca.issue("localhost", server=True).write(workdir, "server")
    ca_file = workdir / "ca.crt"
    ca_file.write_bytes(ca.cert)
    mtls = f"127.0.0.1:{free_port()}"
    server = await start_server(
        wait=False,
        HUMANLINE_TLS_CERT_FILE=str(cert),
        HUMANLINE_TLS_KEY_FILE=str(key),
        HUMANLINE_TLS_CLIENT_CA_FILE=str(ca_file),
        HUMANLINE_MTLS_LISTEN=mtls,
    )
    assert await server.serves_or_exits() == "serving", server.describe()
    trust = grpc.ssl_channel_credentials(root_certificates=ca.cert)
    await _serving(server.target, trust)
    banner = server.stderr_path(server.runs).read_text()
    assert f"TLS; bots and ops with client certificates on {mtls}" in banner
    assert f"https://{server.target}" in banner

    bot_pem = ca.issue(TEST_BOT)
    bot_tls = grpc.ssl_channel_credentials(ca.cert, bot_pem.key, bot_pem.cert)
    bot = Stubs.connect(mtls, KEYS, tls=bot_tls)
    app = Stubs.connect(server.target, KEYS, tls=trust)
    try:
        handoff = await bot.request_handoff()
        assert (await bot.get_handoff(handoff.handoff_id)).handoff_id == handoff.handoff_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # a bot's token, no certificate
            await app.get_handoff(handoff.handoff_id)
        assert error_details(refused.value)["reason"] == "CLIENT_CERTIFICATE_REQUIRED"
    finally:
        await bot.close()
        await app.close()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"HUMANLINE_TLS_CERT_FILE": "server.crt"}, "tls_cert_file and tls_key_file go together"),
        (
            {"HUMANLINE_TLS_CERT_FILE": "missing.crt", "HUMANLINE_TLS_KEY_FILE": "missing.key"},
            "TLS: cannot read missing.crt",
        ),
    ],
    ids=["cert-without-key", "missing-files"],
)
async def test_tls_settings_that_do_not_fit_stop_the_start(
    start_server: StartServer, settings: dict[str, str], says: str
) -> None:
    server = await start_server(wait=False, **settings)
    assert await server.serves_or_exits() == "exited"
    assert server.exit_codes[-1] != 0
    assert says in server.stderr_path(server.runs).read_text(), server.describe()
