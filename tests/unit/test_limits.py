"""The rate and stream limits, and the certificate rule, on their own (a fake clock)."""

from __future__ import annotations

import pytest

from humanline.domain.access import Principal, Role, require_certificate
from humanline.domain.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from humanline.grpc import limits
from humanline.grpc.limits import RateLimiter, StreamLimiter, peer_address


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_one_call_per_token() -> None:
    clock = Clock()
    rate = RateLimiter(2, 3, clock=clock)
    assert [rate.take("bot") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rate.take("bot") == pytest.approx(0.5)  # one token back in half a second
    clock.now += 0.25
    assert rate.take("bot") == pytest.approx(0.25)  # refusals do not push the time out
    clock.now += 0.25
    assert rate.take("bot") == 0.0
    assert rate.take("other") == 0.0  # each key its own bucket
    clock.now += 60
    assert [rate.take("bot") for _ in range(4)][-1] > 0  # refills up to the burst only


def test_over_the_rate_is_resource_exhausted_with_the_delay() -> None:
    rate = RateLimiter(10, 1, clock=Clock())
    rate.check("k", "bot:x")
    with pytest.raises(ResourceExhausted) as over:
        rate.check("k", "bot:x")
    assert over.value.reason == "RATE_LIMITED"
    assert over.value.retry_after == pytest.approx(0.1)
    assert over.value.metadata["caller"] == "bot:x"


def test_no_rate_means_no_limit() -> None:
    rate = RateLimiter(0, 1)
    assert not rate.on
    assert all(rate.take("k") == 0.0 for _ in range(1000))
    assert len(rate) == 0


def test_idle_buckets_are_forgotten_when_there_are_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "IDLE_SWEEP_AT", 10)
    clock = Clock()
    rate = RateLimiter(1, 2, clock=clock)
    for i in range(10):
        rate.take(i)
    rate.take("new")  # ten buckets, none full again yet: all kept
    assert len(rate) == 11
    clock.now += 5  # every bucket has refilled: forgetting them changes nothing
    rate.take("newer")
    assert len(rate) == 1


def test_streams_per_peer_address() -> None:
    streams = StreamLimiter(2)
    a = streams.acquire("ipv4:10.0.0.7:5000")
    streams.acquire("ipv4:10.0.0.7:5001")  # another connection, same address
    with pytest.raises(ResourceExhausted) as over:
        streams.acquire("ipv4:10.0.0.7:5002")
    assert over.value.reason == "TOO_MANY_STREAMS"
    streams.acquire("ipv4:10.0.0.8:5000")  # another address
    streams.release(a)
    with streams.hold("ipv4:10.0.0.7:5003"):
        assert streams.open_streams("ipv4:10.0.0.7:1") == 2
    assert streams.open_streams("ipv4:10.0.0.7:1") == 1
    off = StreamLimiter(0)
    for _ in range(100):
        off.acquire("ipv4:1.2.3.4:1")


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:51234", "ipv6:[::1]"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
        ("ipv4:weird", "ipv4:weird"),
    ],
)
def test_peer_address_drops_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_bots_and_ops_need_a_certificate_naming_them_agents_do_not() -> None:
    bot = Principal(Role.BOT, "bot-1")
    require_certificate(bot, frozenset({"bot-1", "bot-1.example.com"}))
    with pytest.raises(Unauthenticated) as missing:
        require_certificate(bot, frozenset())
    assert missing.value.reason == "CLIENT_CERTIFICATE_REQUIRED"
    with pytest.raises(PermissionDenied) as other:
        require_certificate(Principal(Role.OPS, "ops"), frozenset({"bot-1"}))
    assert other.value.reason == "CERTIFICATE_MISMATCH"
    require_certificate(Principal(Role.AGENT, "ann"), frozenset())
