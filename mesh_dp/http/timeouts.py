"""MeshTimeout `http` for one request: which deadline bounds the next wait. Pure (times in,
decisions out; the clock is the caller's).

Where each applies (Kuma puts the `to[]` ones on the outbound's Envoy route, listener and
cluster; meshfed enforces them on the outbound, per request):

- `requestTimeout` (route timeout): from the moment the whole request has been read from the
  client until the response has been sent whole; it spans every retry. Expiry: 504 if no
  response was started, else the response is cut.
- `perTryTimeout` (MeshRetry): the same span for one attempt; expiry is a retriable failure.
- `streamIdleTimeout` (route idle timeout): the longest wait for a byte of this request's
  exchange, either way. Expiry: 504, or a cut response.
- `maxStreamDuration` (cluster): from the request head until the response ends. Expiry: 504,
  or a cut response.

`0` turns each one off, as in Kuma. `maxConnectionDuration` (an upstream connection is not
reused past that age) and `requestHeadersTimeout` (a client's request head must arrive whole
within it, else 408 and close) are connection-level: proxy.py applies them directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Expiry(enum.Enum):
    REQUEST = "requestTimeout"
    TRY = "perTryTimeout"
    STREAM_IDLE = "streamIdleTimeout"
    STREAM_DURATION = "maxStreamDuration"


@dataclass(frozen=True, slots=True)
class HttpTimeouts:
    """MeshTimeout `http` in seconds; 0: off."""

    request: float = 0.0
    stream_idle: float = 0.0
    max_stream: float = 0.0
    max_connection: float = 0.0
    request_headers: float = 0.0


class Deadlines:
    """The deadlines of one request, as absolute times on the caller's clock."""

    def __init__(self, timeouts: HttpTimeouts, per_try: float, started: float) -> None:
        self.timeouts = timeouts
        self.per_try = per_try
        self.request: float | None = None  # set once the request is complete
        self.attempt: float | None = None
        self.stream = started + timeouts.max_stream if timeouts.max_stream > 0 else None

    def request_complete(self, now: float) -> None:
        if self.request is None and self.timeouts.request > 0:
            self.request = now + self.timeouts.request

    def new_try(self, now: float) -> None:
        self.attempt = now + self.per_try if self.per_try > 0 else None

    def next_wait(self, now: float) -> tuple[float | None, Expiry | None]:
        """How long the next wait may last (None: unbounded) and what expires at its end.
        A deadline already past gives 0."""
        best: float | None = None
        kind: Expiry | None = None
        if self.timeouts.stream_idle > 0:
            best, kind = self.timeouts.stream_idle, Expiry.STREAM_IDLE
        for at, what in (
            (self.stream, Expiry.STREAM_DURATION),
            (self.attempt, Expiry.TRY),
            (self.request, Expiry.REQUEST),
        ):
            if at is None:
                continue
            left = max(0.0, at - now)
            if best is None or left <= best:
                best, kind = left, what
        return best, kind

    def retry_time_left(self, now: float) -> float | None:
        """Time left for a retry (and its back-off) before requestTimeout; None: no limit."""
        if self.request is None:
            return None
        return self.request - now
