"""MeshRetry `http` decisions: whether a failed attempt is tried again, after how long, and
the request body kept for it. Pure.

`retryOn` conditions, as Envoy reads Kuma's names (HTTP/1.1 terms):

| condition          | retried when the attempt ...                                        |
|--------------------|---------------------------------------------------------------------|
| 5xx                | answered 5xx, or failed without a response (any `Failure`)          |
| GatewayError       | answered 502, 503 or 504, or failed without a response              |
| Reset              | failed without a response (closed, broken, perTryTimeout)           |
| ConnectFailure     | could not connect to any endpoint it tried                          |
| RefusedStream      | the upstream closed before sending a byte of a response (HTTP/1.1's |
|                    | nearest case to HTTP/2's REFUSED_STREAM)                            |
| Retriable4xx       | answered 409                                                        |
| EnvoyRatelimited   | answered with an `x-envoy-ratelimited` header                       |
| "503" (any status) | answered that status                                                |
| HttpMethodGet, ... | (a filter, not a condition) only requests of the listed methods     |

Unset `retryOn` is Kuma's default: GatewayError, ConnectFailure, RefusedStream.

Back-off is Envoy's fully jittered exponential one: before retry N (1, 2, ...) a random wait
in [0, (2^N - 1) x base), capped at `maxInterval` (default 10 x base; base defaults to 25 ms).

A request is retried only if its whole body is kept: bodies up to `MAX_REPLAY` bytes are
buffered as they stream up; a larger body is not retried (its first attempt's answer is the
answer). Upgrade requests are never retried.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_REPLAY = 64 * 1024
DEFAULT_RETRY_ON = ("GatewayError", "ConnectFailure", "RefusedStream")
_GATEWAY = frozenset({502, 503, 504})
_RETRIABLE_4XX = frozenset({409})
METHOD_PREFIX = "HttpMethod"
RATELIMITED = b"x-envoy-ratelimited"


class Failure(enum.Enum):
    """How an attempt failed without a response."""

    CONNECT = "connect-failure"  # no endpoint could be connected
    REFUSED = "refused"  # closed before any response byte
    RESET = "reset"  # closed or broken mid-response head
    TIMEOUT = "per-try-timeout"  # perTryTimeout expired before the response head


_FAILURE_CONDITIONS: dict[Failure, frozenset[str]] = {
    Failure.CONNECT: frozenset({"5xx", "GatewayError", "Reset", "ConnectFailure"}),
    Failure.REFUSED: frozenset({"5xx", "GatewayError", "Reset", "RefusedStream"}),
    Failure.RESET: frozenset({"5xx", "GatewayError", "Reset"}),
    Failure.TIMEOUT: frozenset({"5xx", "GatewayError", "Reset"}),
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """MeshRetry `http`, read once per request. `num_retries` 0: no retries."""

    num_retries: int = 0
    per_try_timeout: float = 0.0  # seconds; 0: none
    base_interval: float = 0.025
    max_interval: float = 0.25
    conditions: frozenset[str] = frozenset(DEFAULT_RETRY_ON)
    statuses: frozenset[int] = frozenset()
    methods: frozenset[bytes] = frozenset()  # empty: every method

    @classmethod
    def from_retry_on(cls, retry_on: Iterable[str], **kwargs: float) -> RetryPolicy:
        """Splits Kuma's `retryOn` list into conditions, status codes and methods."""
        conditions: set[str] = set()
        statuses: set[int] = set()
        methods: set[bytes] = set()
        for item in retry_on:
            if item.isdigit():
                statuses.add(int(item))
            elif item.startswith(METHOD_PREFIX):
                methods.add(item[len(METHOD_PREFIX) :].upper().encode())
            else:
                conditions.add("5xx" if item == "5XX" else item)
        num_retries = int(kwargs.pop("num_retries", 0))
        return cls(
            num_retries,
            conditions=frozenset(conditions),
            statuses=frozenset(statuses),
            methods=frozenset(methods),
            **kwargs,
        )

    def allows(self, method: bytes) -> bool:
        return self.num_retries > 0 and (not self.methods or method.upper() in self.methods)

    def retry_status(self, status: int, headers: Iterable[tuple[bytes, bytes]] = ()) -> bool:
        """Whether an answer with `status` (and `headers`) asks for another attempt."""
        c = self.conditions
        if status in self.statuses:
            return True
        if status >= 500 and "5xx" in c:
            return True
        if status in _GATEWAY and "GatewayError" in c:
            return True
        if status in _RETRIABLE_4XX and "Retriable4xx" in c:
            return True
        return "EnvoyRatelimited" in c and any(k.lower() == RATELIMITED for k, _ in headers)

    def retry_failure(self, failure: Failure) -> bool:
        return not self.conditions.isdisjoint(_FAILURE_CONDITIONS[failure])

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (1 for the first)."""
        ceiling = min((2**retry - 1) * self.base_interval, self.max_interval)
        return rng.uniform(0.0, ceiling)


@dataclass(slots=True)
class Replay:
    """The request body as sent so far, kept for a retry while it fits `limit`."""

    limit: int = MAX_REPLAY
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    overflowed: bool = False

    def add(self, chunk: bytes) -> None:
        if self.overflowed:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.overflowed = True
            self.chunks.clear()
            return
        self.chunks.append(chunk)


@dataclass(slots=True)
class RetryState:
    """One request's retries: the policy, how many were made, the kept body."""

    policy: RetryPolicy
    replay: Replay | None  # None: this request is never retried
    done: int = 0

    @classmethod
    def for_request(cls, policy: RetryPolicy, method: bytes, upgrade: bool) -> RetryState:
        keep = policy.allows(method) and not upgrade
        return cls(policy, Replay() if keep else None)

    def _can(self) -> bool:
        return (
            self.replay is not None
            and not self.replay.overflowed
            and self.done < self.policy.num_retries
        )

    def after_status(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        return self._can() and self.policy.retry_status(status, headers)

    def after_failure(self, failure: Failure) -> bool:
        return self._can() and self.policy.retry_failure(failure)

    def next_backoff(self, rng: random.Random) -> float:
        """Counts a retry and returns its wait."""
        self.done += 1
        return self.policy.backoff(self.done, rng)
