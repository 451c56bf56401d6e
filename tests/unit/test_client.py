"""The SDK's parts that need no server: backoff, enum names, errors from trailers, the retry
policy, and how the agent's client settles commands when its stream breaks (the stream's
messages fed in by hand; tests/e2e/test_sdk.py runs it against a real server)."""

from __future__ import annotations

import asyncio
import json
import random

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from humanline.client import AgentClient, ApiError, Backoff, SessionInterrupted
from humanline.client.agents import Outbox, _Pending
from humanline.client.connection import SERVICE_CONFIG, enum_name, enum_value
from humanline.client.errors import status_code
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
)

ConnectResponse = agent_service_pb2.ConnectResponse


def test_backoff_grows_to_its_cap_with_full_jitter() -> None:
    random.seed(7)
    backoff = Backoff(initial=0.2, maximum=5.0, multiplier=2.0)
    for attempt, ceiling in enumerate([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert min(delays) >= 0.0
        assert max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling  # spread over the whole range, not a fixed step
    assert backoff.delay(10_000) <= 5.0  # no overflow after a long outage


def test_enum_values_are_taken_by_short_name_or_number() -> None:
    assert enum_value(handoff_pb2.Urgency, "URGENCY_", "high") == handoff_pb2.URGENCY_HIGH
    assert enum_value(handoff_pb2.Urgency, "URGENCY_", " Critical ") == handoff_pb2.URGENCY_CRITICAL
    assert enum_value(handoff_pb2.Outcome, "OUTCOME_", "follow-up-needed") == (
        handoff_pb2.OUTCOME_FOLLOW_UP_NEEDED
    )
    assert enum_value(handoff_pb2.Urgency, "URGENCY_", 3) == 3
    with pytest.raises(ValueError, match="is not one of low, normal, high, critical"):
        enum_value(handoff_pb2.Urgency, "URGENCY_", "soon")
    assert enum_name(agent_pb2.AgentState, "AGENT_STATE_", agent_pb2.AGENT_STATE_BUSY) == "busy"
    assert enum_name(agent_pb2.AgentState, "AGENT_STATE_", 99) == "99"


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def test_an_api_error_carries_the_reason_and_every_field_violation() -> None:
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message="2 fields are invalid",
        details=[
            _packed(
                error_details_pb2.ErrorInfo(
                    reason="INVALID_ARGUMENT", domain="humanline", metadata={"k": "v"}
                )
            ),
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="customer_id", description="is required"
                        ),
                        error_details_pb2.BadRequest.FieldViolation(
                            field="required_skills[0].min_proficiency",
                            description="must be between 1 and 5",
                        ),
                    ]
                )
            ),
        ],
    )
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString())),
        details="2 fields are invalid",
    )
    api = ApiError.from_rpc_error(error)
    assert (api.code, api.reason, api.metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"k": "v"},
    )
    assert [(v.field, v.description) for v in api.field_violations] == [
        ("customer_id", "is required"),
        ("required_skills[0].min_proficiency", "must be between 1 and 5"),
    ]
    assert str(api) == (
        "INVALID_ARGUMENT: 2 fields are invalid (INVALID_ARGUMENT); customer_id: is required; "
        "required_skills[0].min_proficiency: must be between 1 and 5"
    )


def test_an_error_without_details_is_still_an_api_error() -> None:
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="down"
    )
    api = ApiError.from_rpc_error(error)
    assert (api.code, api.message, api.reason, api.field_violations) == (
        grpc.StatusCode.UNAVAILABLE,
        "down",
        "",
        (),
    )
    assert status_code(code_pb2.FAILED_PRECONDITION) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(12345) == grpc.StatusCode.UNKNOWN


def test_only_idempotent_methods_are_retried_and_all_of_them_exist() -> None:
    services = {
        "humanline.v1.HandoffService": handoff_service_pb2.DESCRIPTOR.services_by_name[
            "HandoffService"
        ],
        "humanline.v1.AgentService": agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"],
        "humanline.v1.PoolService": pool_service_pb2.DESCRIPTOR.services_by_name["PoolService"],
    }
    (config,) = SERVICE_CONFIG["methodConfig"]  # type: ignore[index]
    retried = {(n["service"], n["method"]) for n in config["name"]}
    for service, method in retried:
        assert method in services[service].methods_by_name, (service, method)
    # A retry after a lost answer would create twice, or fail on what the first did.
    never = {
        ("humanline.v1.PoolService", "CreateAgent"),
        ("humanline.v1.PoolService", "DeleteAgent"),
        ("humanline.v1.PoolService", "CreateRoutingPolicy"),
        ("humanline.v1.PoolService", "DeleteRoutingPolicy"),
        ("humanline.v1.AgentService", "Connect"),
    }
    assert not retried & never
    assert config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    json.dumps(SERVICE_CONFIG)  # what the channel is given


def _interaction(interaction_id: str) -> agent_service_pb2.Interaction:
    return agent_service_pb2.Interaction(interaction_id=interaction_id)


async def test_a_broken_stream_settles_each_waiting_command() -> None:
    agent = AgentClient("ann", "127.0.0.1:9")  # never dialled: messages are fed in by hand
    loop = asyncio.get_running_loop()
    held, lost, status = loop.create_future(), loop.create_future(), loop.create_future()
    agent._commands = {
        "c1": _Pending(held, offer_id="offer-held"),  # accepted; the answer was lost
        "c2": _Pending(lost, offer_id="offer-lost"),  # never reached the server
        "c3": _Pending(status),  # a set_status
    }
    agent.pending_offers["offer-lost"] = agent_service_pb2.Offer(offer_id="offer-lost")

    agent._interrupted()
    assert not agent.connected
    assert agent.pending_offers == {}  # offers die with the stream
    assert isinstance(status.exception(), SessionInterrupted)  # it may or may not have happened
    assert not held.done()  # an accept waits for the next welcome to tell
    assert not lost.done()

    welcome = ConnectResponse.Welcome(
        resume_token="t2", resumed=True, active_interactions=[_interaction("offer-held")]
    )
    agent._receive(ConnectResponse(welcome=welcome))
    assert agent.connected
    assert held.result().assignment_confirmed.interaction.interaction_id == "offer-held"
    assert isinstance(lost.exception(), SessionInterrupted)
    assert set(agent.interactions) == {"offer-held"}
    await agent.channel.close()


async def test_a_lost_session_drops_the_work_and_the_resume_token() -> None:
    agent = AgentClient("ann", "127.0.0.1:9")
    agent._resume_token = "t1"
    agent.interactions = {"i1": _interaction("i1")}
    waiting = asyncio.get_running_loop().create_future()
    agent._commands = {"c1": _Pending(waiting, offer_id="o1")}
    agent._session_lost(ApiError(grpc.StatusCode.FAILED_PRECONDITION, "grace period over"))
    assert (agent._resume_token, agent.interactions, agent.sessions_lost) == ("", {}, 1)
    assert isinstance(waiting.exception(), SessionInterrupted)
    await agent.channel.close()


async def test_offers_skip_those_taken_back_before_they_were_read() -> None:
    agent = AgentClient("ann", "127.0.0.1:9")
    for offer_id in ("o1", "o2", "o1"):  # o1 shown twice (after a resume): handed out once
        agent._receive(ConnectResponse(offer=agent_service_pb2.Offer(offer_id=offer_id)))
    rescinded = ConnectResponse.OfferRescinded(offer_id="o1")
    agent._receive(ConnectResponse(offer_rescinded=rescinded))
    agent._end(None)  # logged out: the iteration ends after what is still open
    assert [o.offer_id async for o in agent.offers()] == ["o2"]
    await agent.channel.close()


async def test_logging_in_to_no_server_fails_after_the_timeout_and_closes() -> None:
    agent = AgentClient("ann", "127.0.0.1:1", timeout=1.0, backoff=Backoff(0.05, 0.2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ApiError) as failed:
        await agent.connect()
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert "could not log in to 127.0.0.1:1" in failed.value.message
    assert 1.0 <= loop.time() - started < 10.0
    assert agent.reconnects >= 2  # it kept trying meanwhile
    assert [o async for o in agent.offers()] == []  # closed: nothing more will come


def _refusal(code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    status = status_pb2.Status(
        code=code.value[0],
        message=reason.lower(),
        details=[_packed(error_details_pb2.ErrorInfo(reason=reason, domain="humanline"))],
    )
    trailers = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details=reason.lower())


class _Call:
    """One scripted Connect call: its messages, then its end (an error, or OK)."""

    def __init__(
        self,
        messages: list[ConnectResponse],
        end: grpc.aio.AioRpcError | None,
        hold: bool,
        gate: asyncio.Event | None,
    ) -> None:
        self._messages, self._end, self._hold, self._gate = messages, end, hold, gate

    def __aiter__(self) -> _Call:
        return self

    async def __anext__(self) -> ConnectResponse:
        if self._messages:
            return self._messages.pop(0)
        if self._gate is not None:
            await self._gate.wait()  # the end comes when the test says
        if self._end is not None:
            raise self._end
        if self._hold:
            await asyncio.Event().wait()  # an open stream, until cancelled
        raise StopAsyncIteration

    def cancel(self) -> None:
        pass


class _Server:
    """Plays the server's side of the Connect calls in turn; records each first message."""

    def __init__(self, *calls: tuple[list[ConnectResponse], grpc.aio.AioRpcError | None]) -> None:
        self._calls = list(calls)
        self.firsts: list[str] = []
        self.gates: dict[int, asyncio.Event] = {}  # by call number: its end waits for the gate

    def Connect(self, outbox: object, metadata: object = ()) -> _Call:
        first = outbox._queue.get_nowait()  # type: ignore[attr-defined]
        self.firsts.append(first.WhichOneof("command"))
        messages, end = self._calls.pop(0) if self._calls else ([], None)
        gate = self.gates.get(len(self.firsts))
        return _Call(messages, end, hold=not self._calls and end is None, gate=gate)


def _welcome(token: str, resumed: bool = False) -> ConnectResponse:
    return ConnectResponse(welcome=ConnectResponse.Welcome(resume_token=token, resumed=resumed))


async def test_a_racing_log_in_is_retried_and_a_take_over_is_final() -> None:
    server = _Server(
        ([], _refusal(grpc.StatusCode.ABORTED, "CONCURRENT_LOGIN")),
        ([_welcome("t1")], _refusal(grpc.StatusCode.UNAVAILABLE, "STREAM_LOST")),
        ([], _refusal(grpc.StatusCode.FAILED_PRECONDITION, "RESUME_TOKEN_INVALID")),
        ([_welcome("t2")], _refusal(grpc.StatusCode.ABORTED, "SESSION_REPLACED")),
    )
    dropped = server.gates[2] = asyncio.Event()  # the second call drops once logged in
    agent = AgentClient("ann", "127.0.0.1:9", backoff=Backoff(0.001, 0.01))
    agent._stub = server  # type: ignore[assignment]
    await agent.connect()
    assert agent.connected
    dropped.set()
    with pytest.raises(ApiError) as final:
        async for _ in agent.offers():
            pass
    assert final.value.reason == "SESSION_REPLACED"
    # Refused (racing), welcomed, dropped, resume refused, logged in afresh, taken over.
    assert server.firsts == ["hello", "hello", "resume", "hello"]
    assert agent.sessions_lost == 1
    await agent.close()


async def test_a_command_without_an_answer_fails_with_deadline_exceeded() -> None:
    agent = AgentClient("ann", "127.0.0.1:9", timeout=0.2)
    agent._outbox = Outbox()
    agent._connected.set()  # a stream that is open but never answers
    with pytest.raises(ApiError) as late:
        await agent.set_status("away")
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert agent._commands == {}  # nothing left waiting
    await agent.channel.close()
