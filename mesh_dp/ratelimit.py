"""MeshRateLimit's token buckets (Envoy's local rate limit, as Kuma configures it). Pure.

Envoy's bucket for `num` per `interval` holds at most `num` tokens, starts full and gets `num`
tokens back every `interval` (a fill, not a trickle): a burst of `num` passes at once, the
next waits for the fill. One bucket serves an inbound (HTTP requests) and one its accepted
connections (TCP), shared by every caller, as Envoy's filter on the inbound listener is.
`Buckets` keeps a bucket across config pushes while its rate stays the same, so a push does
not hand out a fresh burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from meshfed.dpconfig.traffic import Rate


class TokenBucket:
    """`num` tokens, refilled to `num` at each `interval` since the bucket was made."""

    __slots__ = ("_clock", "_filled_at", "_tokens", "interval", "num")

    def __init__(self, num: int, interval: float, clock: Callable[[], float]) -> None:
        self.num = num
        self.interval = interval
        self._clock = clock
        self._tokens = num
        self._filled_at = clock()

    def peek(self) -> bool:
        """Whether a token is left, after the fills due by now (none is taken)."""
        now = self._clock()
        if now - self._filled_at >= self.interval:
            fills = int((now - self._filled_at) // self.interval) if self.interval > 0 else 1
            self._filled_at += fills * self.interval
            self._tokens = self.num
        return self._tokens > 0

    def take(self) -> bool:
        """A token if one is left (True), after the fills due by now."""
        if self.peek():
            self._tokens -= 1
            return True
        return False


class Buckets:
    """The bucket of one rate limit (HTTP or TCP) of one inbound, kept while its rate holds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rate: Rate | None = None
        self._bucket: TokenBucket | None = None
        self.limited = 0  # requests or connections refused (logs, tests)

    def bucket(self, rate: Rate | None) -> TokenBucket | None:
        """The bucket for `rate` (None: no limit), the same one while the rate is unchanged."""
        if rate != self._rate:
            self._rate = rate
            self._bucket = (
                None if rate is None else TokenBucket(rate.num, rate.interval, self._clock)
            )
        return self._bucket

    def has_room(self, rate: Rate | None) -> bool:
        """Whether `admit` would let one more pass now (nothing is taken)."""
        bucket = self.bucket(rate)
        return bucket is None or bucket.peek()

    def admit(self, rate: Rate | None) -> bool:
        """Whether one more request or connection may pass under `rate`."""
        bucket = self.bucket(rate)
        if bucket is None or bucket.take():
            return True
        self.limited += 1
        return False
