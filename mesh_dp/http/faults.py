"""MeshRateLimit (HTTP) and MeshFaultInjection on an HTTP inbound, per request (decision 128).

Before a request goes to the application, in Envoy's filter order on Kuma's inbound listener:

1. the local rate limit: no token left in the inbound's bucket (mesh_dp/ratelimit.py) answers
   `onRateLimit.status` (429 by default) with its `headers` set and added;
2. the faults for the caller (meshfed/dpconfig/traffic.py `for_caller`, from the SPIFFE ID
   its certificate proves, `CALLER_ID`), in list order, each one Envoy's fault filter: its
   delay with `delay.percentage`, then its abort with `abort.percentage`; an abort ends the
   chain, so a later fault's percentage counts the requests the earlier ones let through
   (Kuma: 70 % aborts then 50 % aborts give 70 % and 15 %). Delays add up, then an abort
   answers `abort.httpStatus`; a request not aborted may get a `responseBandwidth` (the
   lowest drawn): its response body leaves at that many bits per second, in slices of
   1/16 s worth of bytes (`Pace`, as Envoy's response rate limit).

The sidecar's own answers carry `x-meshfed-error` (`rate-limited`, `fault-abort`) like its
other errors (errors.py). `choose` and `limited_response` are pure; the random source is
injectable.
"""

from __future__ import annotations

import asyncio
import contextvars
import http
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mesh_dp.http.accesslog import Record
from mesh_dp.http.conn import Conn
from mesh_dp.http.errors import ERROR_HEADER
from mesh_dp.http.parse import RequestHead
from mesh_dp.ratelimit import Buckets
from meshfed.dpconfig.model import Inbound
from meshfed.dpconfig.traffic import Faults, HttpFault, InboundFaults, InboundRateLimit
from meshfed.pki.tag_sans import NO_TAGS, TagSet

# The verified SPIFFE ID of the caller of the inbound connection this task serves.
CALLER_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller_id", default=None)
# ... and the tags its certificate vouches for (meshfed/pki/tag_sans.py)
CALLER_TAGS: contextvars.ContextVar[TagSet] = contextvars.ContextVar("caller_tags", default=NO_TAGS)

RATE_LIMITED = "rate-limited"
FAULT_ABORT = "fault-abort"
# Headers a policy may not set on the sidecar's answer: they frame the response.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_CALLERS_KEPT = 1024  # callers whose faults are remembered (then the memo starts over)


@dataclass(frozen=True, slots=True)
class Injected:
    """What the faults do to one request: wait `delay` seconds, then answer `abort` (None:
    go on to the application)."""

    delay: float = 0.0
    abort: int | None = None
    bandwidth: int | None = None  # bits per second of the response body


NOTHING = Injected()


def choose(faults: Iterable[HttpFault], rng: Callable[[], float]) -> Injected:
    """The faults one request gets; `rng()` draws uniformly from [0, 1) per percentage."""
    delay = 0.0
    bandwidth: int | None = None
    for fault in faults:
        if fault.delay is not None and rng() * 100 < fault.delay.percentage:
            delay += fault.delay.seconds
        if fault.abort is not None and rng() * 100 < fault.abort.percentage:
            return Injected(delay, fault.abort.status)
        slow = fault.response_bandwidth
        if slow is not None and rng() * 100 < slow.percentage:
            bps = slow.bits_per_second
            bandwidth = bps if bandwidth is None else min(bandwidth, bps)
    if not delay and bandwidth is None:
        return NOTHING
    return Injected(delay, None, bandwidth)


class Pace:
    """When each slice of a response body may leave so that it leaves at `bits_per_second`:
    slices of 1/16 s worth of bytes (Envoy's), the first at once."""

    SLICES_PER_SECOND = 16

    def __init__(self, bits_per_second: int, clock: Callable[[], float]) -> None:
        self.bytes_per_second = bits_per_second / 8
        self.slice = max(1, int(self.bytes_per_second / self.SLICES_PER_SECOND))
        self._clock = clock
        self._start: float | None = None
        self._sent = 0

    def wait_before(self, n: int) -> float:
        """Seconds to wait before sending the next `n` bytes (then counted as sent)."""
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start + self._sent / self.bytes_per_second
        self._sent += n
        return max(0.0, due - now)


# The pace of the response of the request this task serves (None: not limited).
_PACE: contextvars.ContextVar[Pace | None] = contextvars.ContextVar("pace", default=None)


def _clean(value: str) -> bool:
    return not any(c in value for c in "\r\n\0")


def sidecar_response(
    status: int,
    kind: str,
    *,
    close: bool,
    head_only: bool,
    set_headers: Iterable[tuple[str, str]] = (),
    add_headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete response the sidecar writes itself, with a policy's headers set (replacing
    one of the same name) and added; framing headers and values with CR, LF or NUL are
    skipped (the API's header names exclude them, values are checked here)."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    body = f"meshfed sidecar: {kind}\n".encode()
    headers: list[tuple[str, str]] = [
        ("content-type", "text/plain; charset=utf-8"),
        (ERROR_HEADER.decode(), kind),
    ]
    for name, value in set_headers:
        if name.lower() not in _FRAMING and _clean(value):
            headers = [h for h in headers if h[0] != name.lower()] + [(name.lower(), value)]
    headers += [
        (name.lower(), value)
        for name, value in add_headers
        if name.lower() not in _FRAMING and _clean(value)
    ]
    headers.append(("content-length", str(len(body))))
    if close:
        headers.append(("connection", "close"))
    lines = [f"HTTP/1.1 {status} {reason}\r\n".encode()]
    lines += [f"{n}: {v}\r\n".encode("latin-1", errors="replace") for n, v in headers]
    lines.append(b"\r\n")
    return b"".join(lines) + (b"" if head_only else body)


def limited_response(rl: InboundRateLimit, *, close: bool, head_only: bool) -> bytes:
    return sidecar_response(
        rl.status,
        RATE_LIMITED,
        close=close,
        head_only=head_only,
        set_headers=rl.set_headers,
        add_headers=rl.add_headers,
    )


def applies(inbound: Inbound) -> bool:
    """Whether requests of `inbound` need `InboundTraffic` (else the fast path keeps them)."""
    return inbound.rate_limit.http is not None or bool(inbound.faults.sources)


class InboundTraffic:
    """One HTTP inbound's request rate limit and faults. proxy.py calls `apply` per request
    before the first attempt. fast.py keeps a request when `fast` says nothing would happen
    to it (a token is left, no fault is for its caller) and then takes its token (`take`)
    once it sends the request; else it leaves the request to proxy.py."""

    def __init__(
        self,
        inbound: Callable[[], Inbound],
        *,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inbound = inbound
        self._rng = rng or random.Random().random
        self._clock = clock
        self.requests = Buckets(clock)
        self.aborted = 0  # requests answered by a fault (logs, tests)
        # the faults per caller of the current InboundFaults, looked up once per caller
        self._faults: InboundFaults | None = None
        self._by_caller: dict[tuple[str | None, TagSet], Faults] = {}

    def faults_for(
        self, faults: InboundFaults, caller: str | None, tags: TagSet = NO_TAGS
    ) -> Faults:
        if faults is not self._faults:
            self._faults, self._by_caller = faults, {}
        found = self._by_caller.get((caller, tags))
        if found is None:
            if len(self._by_caller) >= _CALLERS_KEPT:
                self._by_caller.clear()
            found = self._by_caller[caller, tags] = faults.for_caller(caller, tags)
        return found

    def fast(self, ctx: contextvars.Context) -> bool:
        """Whether the callback path may serve the next request of the connection whose
        serving task's context is `ctx`: no fault for its caller, a token left."""
        inbound = self._inbound()
        faults = inbound.faults
        if faults.sources and self.faults_for(
            faults, ctx.get(CALLER_ID), ctx.get(CALLER_TAGS, NO_TAGS)
        ):
            return False
        return self.requests.has_room(inbound.rate_limit.http)

    def take(self) -> None:
        """The callback path sends a request `fast` allowed: its token."""
        self.requests.admit(self._inbound().rate_limit.http)

    async def apply(
        self, down: Conn, head: RequestHead, record: Record, *, whole: bool
    ) -> bool | None:
        """None: the request goes on. Else the sidecar answered it (the rate limit or an
        abort) and the value says whether the connection stays open."""
        inbound = self._inbound()
        _PACE.set(None)
        keep = whole and head.keep_alive and not head.upgrade
        head_only = head.method == b"HEAD"
        rl = inbound.rate_limit
        if not self.requests.admit(rl.http):
            down.write(limited_response(rl, close=not keep, head_only=head_only))
            record.status, record.error = rl.status, RATE_LIMITED
            return keep
        if not inbound.faults.sources:
            return None
        caller = CALLER_ID.get(), CALLER_TAGS.get()
        injected = choose(self.faults_for(inbound.faults, *caller), self._rng)
        if injected.delay > 0:
            await asyncio.sleep(injected.delay)
        if injected.abort is None:
            if injected.bandwidth is not None:
                _PACE.set(Pace(injected.bandwidth, self._clock))
            return None
        self.aborted += 1
        down.write(
            sidecar_response(injected.abort, FAULT_ABORT, close=not keep, head_only=head_only)
        )
        record.status, record.error = injected.abort, FAULT_ABORT
        return keep

    def paced(self) -> bool:
        """Whether the response of the request this task serves has a responseBandwidth."""
        return _PACE.get() is not None

    async def write_paced(self, down: Conn, data: bytes) -> None:
        """Writes `data` (response body bytes) to the caller, slice by slice, at the pace."""
        pace = _PACE.get()
        assert pace is not None
        view = memoryview(data)
        for at in range(0, len(data), pace.slice):
            piece = view[at : at + pace.slice]
            wait = pace.wait_before(len(piece))
            if wait > 0:
                await asyncio.sleep(wait)
            down.write(bytes(piece))
            await down.drain()
