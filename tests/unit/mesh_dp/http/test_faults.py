"""MeshFaultInjection per request and the sidecar's own answers (mesh_dp/http/faults.py)."""

from __future__ import annotations

import contextvars
import itertools
import random

from mesh_dp.http.faults import (
    CALLER_ID,
    NOTHING,
    InboundTraffic,
    Injected,
    Pace,
    choose,
    limited_response,
    sidecar_response,
)
from mesh_dp.http.parse import ResponseParser
from meshfed.dpconfig.model import Inbound
from meshfed.dpconfig.traffic import (
    Abort,
    Bandwidth,
    Delay,
    HttpFault,
    InboundFaults,
    InboundRateLimit,
    Rate,
)
from meshfed.policy.permissions import Permissions


def draws(*values: float):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda: next(it)


def test_delay_then_abort_within_one_fault() -> None:
    fault = HttpFault(abort=Abort(503, 50.0), delay=Delay(0.5, 10.0))
    assert choose([fault], draws(0.05, 0.2)) == Injected(0.5, 503)
    assert choose([fault], draws(0.5, 0.7)) is NOTHING
    assert choose([fault], draws(0.05, 0.7)) == Injected(0.5, None)


def test_an_abort_ends_the_list_and_delays_add_up() -> None:
    faults = [
        HttpFault(delay=Delay(1.0, 100.0)),
        HttpFault(abort=Abort(500, 70.0)),
        HttpFault(delay=Delay(2.0, 100.0), abort=Abort(503, 50.0)),
    ]
    assert choose(faults, draws(0.0, 0.1)) == Injected(1.0, 500)  # third never drawn
    assert choose(faults, draws(0.0, 0.9, 0.0, 0.3)) == Injected(3.0, 503)
    assert choose(faults, draws(0.0, 0.9, 0.0, 0.6)) == Injected(3.0, None)


def test_zero_and_hundred_percent() -> None:
    never, always = HttpFault(abort=Abort(500, 0.0)), HttpFault(abort=Abort(418, 100.0))
    assert choose([never], draws(0.0)) is NOTHING
    assert choose([always], draws(0.999999)) == Injected(0.0, 418)


def test_kumas_example_seventy_then_fifty_percent() -> None:
    """Kuma's page: 70 % get 500, and 50 % of the other 30 % get 503."""
    faults = [HttpFault(abort=Abort(500, 70.0)), HttpFault(abort=Abort(503, 50.0))]
    rng = random.Random(7).random
    counts = {500: 0, 503: 0, None: 0}
    for _ in range(20_000):
        counts[choose(faults, rng).abort] += 1
    assert abs(counts[500] / 20_000 - 0.70) < 0.02
    assert abs(counts[503] / 20_000 - 0.15) < 0.02


def parse(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    parser = ResponseParser(b"GET")
    events = parser.feed(raw)
    head = events[0]
    headers: dict[str, list[str]] = {}
    for name, value in head.headers:
        headers.setdefault(name.decode().lower(), []).append(value.decode())
    body = b"".join(e for e in events[1:] if isinstance(e, bytes))
    return head.status, headers, body


def test_the_rate_limited_answer_sets_and_adds_headers() -> None:
    rl = InboundRateLimit(
        http=Rate(5, 1.0),
        status=423,
        set_headers=(("x-kuma-rate-limited", "true"), ("content-type", "text/html")),
        add_headers=(("x-extra", "a"), ("x-extra", "b")),
    )
    status, headers, body = parse(limited_response(rl, close=False, head_only=False))
    assert status == 423
    assert headers["x-kuma-rate-limited"] == ["true"]
    assert headers["content-type"] == ["text/html"]  # set replaces the sidecar's own
    assert headers["x-extra"] == ["a", "b"]
    assert headers["x-meshfed-error"] == ["rate-limited"]
    assert "connection" not in headers and body.startswith(b"meshfed sidecar")


def test_framing_headers_and_bad_values_are_not_written() -> None:
    raw = sidecar_response(
        503,
        "fault-abort",
        close=True,
        head_only=False,
        set_headers=(("content-length", "0"), ("x-a", "b\r\nx-injected: 1")),
        add_headers=(("transfer-encoding", "chunked"),),
    )
    status, headers, body = parse(raw)
    assert status == 503 and headers["connection"] == ["close"]
    assert "x-a" not in headers and "x-injected" not in headers
    assert headers["content-length"] == [str(len(body))]
    assert "transfer-encoding" not in headers


def test_any_status_has_a_reason_line() -> None:
    for status in itertools.chain((100, 299, 418, 599), range(500, 505)):
        assert sidecar_response(status, "fault-abort", close=True, head_only=True).startswith(
            b"HTTP/1.1 %d " % status
        )


def test_bandwidth_is_drawn_unless_aborted_and_the_lowest_wins() -> None:
    faults = [
        HttpFault(response_bandwidth=Bandwidth(80_000, 100.0)),
        HttpFault(abort=Abort(500, 50.0), response_bandwidth=Bandwidth(8_000, 50.0)),
    ]
    assert choose(faults, draws(0.0, 0.9, 0.1)) == Injected(0.0, None, 8_000)
    assert choose(faults, draws(0.0, 0.9, 0.9)) == Injected(0.0, None, 80_000)
    assert choose(faults, draws(0.0, 0.1)) == Injected(0.0, 500, None)


def test_pace_sends_slices_on_a_grid_from_the_first() -> None:
    now = [10.0]
    pace = Pace(16_000, lambda: now[0])  # 2,000 bytes/s: slices of 125 bytes
    assert pace.slice == 125
    assert pace.wait_before(125) == 0.0
    assert pace.wait_before(125) == 0.0625
    now[0] += 0.0625
    assert pace.wait_before(125) == 0.0625
    now[0] += 2.0  # the application was slow: no wait owed
    assert pace.wait_before(125) == 0.0
    assert Pace(8, lambda: 0.0).slice == 1  # a byte a second: one byte at a time


def inbound(faults: InboundFaults, rate: InboundRateLimit) -> Inbound:
    return Inbound(
        "",
        "127.0.0.1",
        8080,
        "127.0.0.1",
        80,
        "backend",
        {},
        Permissions(mesh="default"),
        protocol="http",
        faults=faults,
        rate_limit=rate,
    )


def with_caller(caller: str | None) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(CALLER_ID.set, caller)
    return ctx


def test_the_callback_path_keeps_requests_no_fault_is_for() -> None:
    faults = InboundFaults(
        mesh="default",
        services={"web": (HttpFault(abort=Abort(503, 50.0)),)},
        sources=("MeshFaultInjection/f",),
    )
    traffic = InboundTraffic(lambda: inbound(faults, InboundRateLimit()))
    assert not traffic.fast(with_caller("spiffe://default/web"))
    assert traffic.fast(with_caller("spiffe://default/other"))
    assert traffic.fast(with_caller(None))


def test_the_callback_path_takes_tokens_while_they_last() -> None:
    now = [0.0]
    limit = InboundRateLimit(http=Rate(2, 60.0), sources=("MeshRateLimit/r",))
    traffic = InboundTraffic(lambda: inbound(InboundFaults(), limit), clock=lambda: now[0])
    ctx = with_caller("spiffe://default/web")
    for _ in range(2):
        assert traffic.fast(ctx)
        traffic.take()
    assert not traffic.fast(ctx)  # proxy.py answers it (onRateLimit)
    assert traffic.requests.limited == 0  # counted there, once
    now[0] += 60.0
    assert traffic.fast(ctx)
