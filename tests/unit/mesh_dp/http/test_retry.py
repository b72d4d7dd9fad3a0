"""MeshRetry http decisions: conditions, methods, budget, back-off, the kept body."""

from __future__ import annotations

import random

import pytest

from mesh_dp.http.retry import (
    DEFAULT_RETRY_ON,
    MAX_REPLAY,
    Failure,
    Replay,
    RetryPolicy,
    RetryState,
)


def policy(*retry_on: str, n: int = 3) -> RetryPolicy:
    return RetryPolicy.from_retry_on(retry_on, num_retries=n)


@pytest.mark.parametrize(
    ("retry_on", "status", "retried"),
    [
        (("5xx",), 500, True),
        (("5XX",), 599, True),
        (("5xx",), 404, False),
        (("GatewayError",), 503, True),
        (("GatewayError",), 500, False),
        (("Retriable4xx",), 409, True),
        (("Retriable4xx",), 400, False),
        (("503",), 503, True),
        (("503",), 502, False),
        (("429", "Reset"), 429, True),
        (("Reset", "ConnectFailure", "RefusedStream"), 503, False),
        (DEFAULT_RETRY_ON, 502, True),
        (DEFAULT_RETRY_ON, 500, False),
    ],
)
def test_status_conditions(retry_on: tuple[str, ...], status: int, retried: bool) -> None:
    assert policy(*retry_on).retry_status(status) is retried


def test_envoy_ratelimited_looks_at_the_header() -> None:
    p = policy("EnvoyRatelimited")
    assert p.retry_status(429, [(b"X-Envoy-RateLimited", b"1")])
    assert not p.retry_status(429, [(b"retry-after", b"1")])


@pytest.mark.parametrize(
    ("condition", "failures"),
    [
        ("5xx", set(Failure)),
        ("GatewayError", set(Failure)),
        ("Reset", set(Failure)),
        ("ConnectFailure", {Failure.CONNECT}),
        ("RefusedStream", {Failure.REFUSED}),
        ("Retriable4xx", set()),
        ("503", set()),
    ],
)
def test_failure_conditions(condition: str, failures: set[Failure]) -> None:
    p = policy(condition)
    assert {f for f in Failure if p.retry_failure(f)} == failures


def test_methods_filter_which_requests_are_retried() -> None:
    p = policy("5xx", "HttpMethodGet", "HttpMethodPut")
    assert p.allows(b"GET") and p.allows(b"put")
    assert not p.allows(b"POST")
    assert not RetryState.for_request(p, b"POST", upgrade=False).after_status(500, [])
    assert policy("5xx").allows(b"POST")  # no method listed: every method


def test_budget_upgrades_and_zero_retries() -> None:
    rng = random.Random(1)
    state = RetryState.for_request(policy("5xx", n=2), b"GET", upgrade=False)
    assert state.after_status(500, [])
    state.next_backoff(rng)
    assert state.after_failure(Failure.RESET)
    state.next_backoff(rng)
    assert not state.after_status(500, [])  # two retries made
    assert not RetryState.for_request(policy("5xx"), b"GET", upgrade=True).after_status(500, [])
    assert not RetryState.for_request(policy("5xx", n=0), b"GET", upgrade=False).after_status(
        500, []
    )


def test_a_body_above_the_buffer_is_not_retried() -> None:
    state = RetryState.for_request(policy("5xx"), b"POST", upgrade=False)
    assert state.replay is not None
    state.replay.add(b"x" * MAX_REPLAY)
    assert state.after_status(500, []) and state.replay.chunks
    state.replay.add(b"y")
    assert state.replay.overflowed and not state.replay.chunks
    assert not state.after_status(500, [])
    state.replay.add(b"z")  # stays overflowed
    assert state.replay.size == MAX_REPLAY + 1


def test_replay_keeps_chunks_in_order() -> None:
    r = Replay(limit=10)
    for c in (b"ab", b"cd", b"ef"):
        r.add(c)
    assert b"".join(r.chunks) == b"abcdef" and not r.overflowed


def test_backoff_is_fully_jittered_exponential_and_capped() -> None:
    p = RetryPolicy(num_retries=10, base_interval=0.025, max_interval=0.25)
    rng = random.Random(7)
    for retry, ceiling in ((1, 0.025), (2, 0.075), (3, 0.175), (4, 0.25), (9, 0.25)):
        waits = [p.backoff(retry, rng) for _ in range(300)]
        assert all(0.0 <= w <= ceiling for w in waits), retry
        assert max(waits) > ceiling * 0.8  # spread over the whole range
