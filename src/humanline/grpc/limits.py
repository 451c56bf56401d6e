"""Limits at the boundary: each caller's call rate, and each peer's open streams.

- **Call rate, per principal**: a token bucket per caller (its role and subject: one agent,
  one bot, one operator), refilled at `rate` calls a second up to `burst`. Every call
  counts, and so does every command on an agent's stream. Over the limit, the call ends
  RESOURCE_EXHAUSTED (reason RATE_LIMITED) with a RetryInfo saying when a token is back;
  nothing else runs, so a flooding caller costs the server one dictionary lookup a call.
- **Open streams, per peer**: long-lived streams (Connect, WatchHandoff) per remote
  address. Over the limit, the new stream ends RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS)
  before it holds anything. Behind a proxy or a carrier NAT many callers share one address;
  size the limit for that, or set 0 to turn it off.

Written by hand rather than taken from a rate-limiting library: the check sits on every
call's path, must say exactly when to retry (RetryInfo), and is a few lines of arithmetic on
the event loop's own thread, with no locks or storage backends to carry. The limits are per
replica: N replicas let a caller N times the rate, which is what bounds the load on each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from humanline.domain.errors import ResourceExhausted

IDLE_SWEEP_AT = 10_000  # buckets kept before the full (idle) ones are dropped


class RateLimiter:
    """Token buckets, one per key; `rate` <= 0 turns the limit off."""

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def on(self) -> bool:
        return self.rate > 0

    def take(self, key: Hashable) -> float:
        """Takes one token for `key`: 0.0 if it had one, else the seconds until it will."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= IDLE_SWEEP_AT and key not in self._buckets:
            self._sweep(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def check(self, key: Hashable, who: str) -> None:
        """Raises ResourceExhausted (RATE_LIMITED, with the retry delay) when `key` is over."""
        wait = self.take(key)
        if wait > 0:
            raise ResourceExhausted(
                f"too many calls from {who}: at most {self.rate:g} a second "
                f"(bursts of {self.burst:g}); retry after {wait:.3f} s",
                reason="RATE_LIMITED",
                metadata={"caller": who, "retry_after_seconds": f"{wait:.3f}"},
                retry_after=wait,
            )

    def _sweep(self, now: float) -> None:
        """Drops the buckets that have refilled: forgetting them changes nothing."""
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class StreamLimiter:
    """Counts open streams per peer address; `limit` <= 0 turns the limit off."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open_streams(self, peer: str) -> int:
        return self._open.get(peer_address(peer), 0)

    def acquire(self, peer: str) -> str:
        """One more stream from `peer` (grpc's `context.peer()`); ResourceExhausted
        (TOO_MANY_STREAMS) when the peer has its limit open already. Returns the key to
        `release` when the stream ends."""
        address = peer_address(peer)
        if self.limit <= 0:
            return address
        count = self._open.get(address, 0)
        if count >= self.limit:
            raise ResourceExhausted(
                f"too many open streams from this address (at most {self.limit}); close one first",
                reason="TOO_MANY_STREAMS",
                metadata={"limit": str(self.limit)},
            )
        self._open[address] = count + 1
        return address

    def release(self, address: str) -> None:
        """The stream `acquire` counted has ended."""
        left = self._open.get(address, 0) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)

    @contextmanager
    def hold(self, peer: str) -> Iterator[None]:
        """`acquire` for the duration of the block."""
        address = self.acquire(peer)
        try:
            yield
        finally:
            self.release(address)


def peer_address(peer: str) -> str:
    """The remote address of grpc's peer string, without the port: `ipv4:10.0.0.7:51234`
    -> `ipv4:10.0.0.7`, `ipv6:[::1]:51234` -> `ipv6:[::1]`; others (unix:...) as they are."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit():
            return host
    return peer
