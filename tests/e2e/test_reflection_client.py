"""A client nobody here wrote walks the whole lifecycle through server reflection.

`buf curl` (from npm, run with npx) knows nothing of humanline's protos: it learns the API from
the server's reflection service and speaks JSON. It creates an agent, holds the agent's Connect
stream open reading JSON commands from a pipe (`-d @-`), requests a handoff, reads the offer
from its stdout, accepts it on the pipe, completes it, and sees the handoff COMPLETED. Errors
reach it with their google.rpc details.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from humanline.domain.access import Principal, Role
from tests.e2e.helpers import eventually
from tests.e2e.process import KEYS, ServerProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("npx") is None,
        reason="npx is not on PATH: install Node.js to run buf curl against the server",
    ),
]

BUF_CURL = (
    "npx",
    "--yes",
    "@bufbuild/buf@1.75.0",
    "curl",
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
)
M = TypeVar("M", bound=Message)

# The first npx run may download buf; later ones start in about a second.
CURL_TIMEOUT = 180.0
READ_TIMEOUT = 30.0

OPS = Principal(Role.OPS, "ops")
BOT = Principal(Role.BOT, "curl-bot")
ALICE = Principal(Role.AGENT, "alice")


def bearer(principal: Principal) -> tuple[str, str]:
    """buf curl's arguments that send `principal`'s token, as a deployment's client would."""
    return ("-H", f"Authorization: Bearer {KEYS.issue(principal)}")


def json_objects(text: str) -> list[Any]:
    """The JSON values in `text`, which holds them one after another (buf curl prints each
    response as pretty JSON); anything between them is skipped."""
    decoder = json.JSONDecoder()
    objects, i = [], 0
    while (start := text.find("{", i)) >= 0:
        value, i = decoder.raw_decode(text, start)
        objects.append(value)
    return objects


@dataclass
class Curl:
    """One finished buf curl run."""

    returncode: int
    stdout: str
    stderr: str

    def response(self) -> dict[str, Any]:
        """The single response of a successful unary call."""
        assert self.returncode == 0, self.stderr
        (response,) = json_objects(self.stdout)
        assert isinstance(response, dict)
        return response


async def stop_group(process: asyncio.subprocess.Process) -> None:
    """Ends what is left of a buf curl run (npx, node and buf share its process group)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def buf_curl(
    *args: str, body: dict[str, Any] | None = None, caller: Principal | None = None
) -> Curl:
    """Runs `buf curl [-H AUTHORIZATION] [-d BODY] ARGS...` to completion."""
    data = ("-d", json.dumps(body)) if body is not None else ()
    auth = bearer(caller) if caller is not None else ()
    process = await asyncio.create_subprocess_exec(
        *BUF_CURL,
        *auth,
        *data,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CURL_TIMEOUT)
    finally:
        await stop_group(process)
    assert process.returncode is not None
    return Curl(process.returncode, out.decode(), err.decode())


class ConnectStream:
    """AgentService/Connect through buf curl: JSON commands in on a pipe, JSON events out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []
        self._text = ""
        self._pos = 0
        self._decoder = json.JSONDecoder()

    @classmethod
    async def open(cls, url: str, caller: Principal) -> ConnectStream:
        process = await asyncio.create_subprocess_exec(
            *BUF_CURL,
            *bearer(caller),
            "-d",
            "@-",
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return cls(process)

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    def _parse(self) -> list[dict[str, Any]]:
        parsed = []
        while (start := self._text.find("{", self._pos)) >= 0:
            try:
                value, end = self._decoder.raw_decode(self._text, start)
            except json.JSONDecodeError:
                break  # incomplete: wait for more output
            self._pos = end
            parsed.append(value)
        return parsed

    async def expect(
        self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda m: True
    ) -> dict[str, Any]:
        """The next event of `kind` (e.g. "offer") satisfying `where`, skipping others."""
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT
        while True:
            for message in self._parse():
                self.seen.append(message)
                if kind in message and where(message):
                    return message
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {kind} from buf curl; saw {self.seen}")
            chunk = await asyncio.wait_for(self.process.stdout.read(65536), remaining)
            if not chunk:
                err = await self._stderr()
                raise AssertionError(f"buf curl ended before {kind}; saw {self.seen}\n{err}")
            self._text += chunk.decode()

    async def close(self) -> tuple[int, str]:
        """Closes the pipe (a log-out); returns buf curl's exit code and its stderr."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        try:
            rest = await asyncio.wait_for(self.process.stdout.read(), READ_TIMEOUT)
            self._text += rest.decode()
            self.seen.extend(self._parse())
            code = await asyncio.wait_for(self.process.wait(), READ_TIMEOUT)
        finally:
            await stop_group(self.process)
        return code, await self._stderr()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        with contextlib.suppress(TimeoutError):
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()
        return ""


def decode_detail(detail: dict[str, Any], kind: type[M]) -> M:
    """A google.rpc detail as buf curl prints it (unpadded URL-safe base64), decoded."""
    value = detail["value"]
    return kind.FromString(base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_"))


async def test_buf_curl_walks_the_lifecycle_through_reflection(server: ServerProcess) -> None:
    base = f"http://{server.target}"

    # Reflection needs no token: it shows only the API's shape.
    listed = await buf_curl("--list-methods", base)
    assert listed.returncode == 0, listed.stderr
    methods = set(listed.stdout.split())
    assert {
        "humanline.v1.PoolService/CreateAgent",
        "humanline.v1.AgentService/Connect",
        "humanline.v1.AgentService/CompleteInteraction",
        "humanline.v1.HandoffService/RequestHandoff",
        "humanline.v1.HandoffService/GetHandoff",
        "grpc.health.v1.Health/Check",
    } <= methods

    created = await buf_curl(
        f"{base}/humanline.v1.PoolService/CreateAgent",
        body={
            "agentId": "alice",
            "agent": {
                "displayName": "Alice",
                "skills": [{"skill": "billing", "proficiency": 4}],
                "languages": ["en"],
                "capacity": 1,
            },
        },
        caller=OPS,
    )
    assert created.response()["agent"]["state"] == "AGENT_STATE_OFFLINE"

    stream = await ConnectStream.open(f"{base}/humanline.v1.AgentService/Connect", ALICE)
    try:
        await stream.send({"commandId": "h1", "hello": {"agentId": "alice"}})
        welcome = await stream.expect("welcome")
        assert welcome["commandId"] == "h1"
        assert welcome["welcome"]["resumeToken"]
        assert welcome["welcome"]["agent"]["state"] == "AGENT_STATE_AVAILABLE"

        requested = await buf_curl(
            f"{base}/humanline.v1.HandoffService/RequestHandoff",
            body={
                "requestId": str(uuid.uuid4()),
                "conversationId": "c2",
                "customerId": "u1",
                "interactionType": "billing_dispute",
                "requiredSkills": [{"skill": "billing", "minProficiency": 3}],
                "urgency": "URGENCY_HIGH",
                "summary": "Charged twice",
            },
            caller=BOT,
        )
        handoff = requested.response()["handoff"]
        assert handoff["state"] == "HANDOFF_STATE_OFFERED"  # alice was free: offered at once
        handoff_id = handoff["handoffId"]

        offer = (await stream.expect("offer"))["offer"]
        assert offer["details"]["handoffId"] == handoff_id
        assert offer["details"]["summary"] == "Charged twice"
        assert offer["details"]["urgency"] == "URGENCY_HIGH"

        await stream.send({"commandId": "a1", "acceptOffer": {"offerId": offer["offerId"]}})
        confirmed = await stream.expect("assignmentConfirmed")
        assert confirmed["commandId"] == "a1"
        interaction = confirmed["assignmentConfirmed"]["interaction"]
        assert interaction["interactionId"] == offer["offerId"]

        get = f"{base}/humanline.v1.HandoffService/GetHandoff"
        assigned = (await buf_curl(get, body={"handoffId": handoff_id}, caller=BOT)).response()[
            "handoff"
        ]
        assert assigned["state"] == "HANDOFF_STATE_ASSIGNED"
        assert assigned["assignedAgent"] == {"agentId": "alice", "displayName": "Alice"}

        completed = await buf_curl(
            f"{base}/humanline.v1.AgentService/CompleteInteraction",
            body={
                "agentId": "alice",
                "interactionId": interaction["interactionId"],
                "outcome": "OUTCOME_RESOLVED",
                "dispositionCode": "refund/issued",
                "notes": "refunded",
            },
            caller=ALICE,
        )
        done = completed.response()["interaction"]
        assert done["outcome"] == "OUTCOME_RESOLVED"
        assert "handleTime" in done

        final = (await buf_curl(get, body={"handoffId": handoff_id}, caller=BOT)).response()[
            "handoff"
        ]
        assert final["state"] == "HANDOFF_STATE_COMPLETED"
        assert final["outcome"] == "OUTCOME_RESOLVED"

        await stream.send({"commandId": "hb1", "heartbeat": {}})
        beat = await stream.expect("heartbeat", lambda m: m.get("commandId") == "hb1")
        assert beat["heartbeat"]["serverTime"]
    finally:
        code, err = await stream.close()
    assert code == 0, err
    assert not [m for m in stream.seen if "commandRejected" in m], stream.seen

    # Closing the pipe ended the stream: a log-out without work, so alice is offline.
    async def alice() -> dict[str, Any]:
        result = await buf_curl(
            f"{base}/humanline.v1.PoolService/GetAgent", body={"agentId": "alice"}, caller=OPS
        )
        agent: dict[str, Any] = result.response()["agent"]
        return agent

    await eventually(alice, lambda a: a["state"] == "AGENT_STATE_OFFLINE", what="alice offline")

    # Rich errors reach a foreign client: INVALID_ARGUMENT with BadRequest field violations.
    getter = f"{base}/humanline.v1.HandoffService/GetHandoff"
    bad = await buf_curl(getter, body={"handoffId": "42"}, caller=BOT)
    assert bad.returncode != 0
    (error,) = [e for e in json_objects(bad.stderr) if "code" in e]
    assert error["code"] == "invalid_argument"
    (violations,) = [d for d in error["details"] if d["type"] == "google.rpc.BadRequest"]
    fields = [
        v.field for v in decode_detail(violations, error_details_pb2.BadRequest).field_violations
    ]
    assert fields == ["handoff_id"]

    # Without a token a foreign client is refused with a reason it can read.
    anonymous = await buf_curl(getter, body={"handoffId": handoff_id})
    (refused,) = [e for e in json_objects(anonymous.stderr) if "code" in e]
    assert refused["code"] == "unauthenticated"
    (info,) = [d for d in refused["details"] if d["type"] == "google.rpc.ErrorInfo"]
    assert decode_detail(info, error_details_pb2.ErrorInfo).reason == "TOKEN_MISSING"
