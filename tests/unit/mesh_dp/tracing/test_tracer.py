"""The per-request hook (mesh_dp/tracing/tracer.py) and what the exporters derive from a
span (span.py): ids, propagation written into the request sent on, sampling, tags."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_dp.http.accesslog import Record
from mesh_dp.http.headers import request_bytes
from mesh_dp.http.parse import RequestHead, RequestParser
from mesh_dp.tracing.span import Listener, Span, name_of, tags_of
from mesh_dp.tracing.tracer import _FIELDS, Pending, Tracer, span_of
from meshfed.dpconfig.tracing import TraceTag, Tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TAGS = (
    TraceTag("team", literal="core"),
    TraceTag("env", header="x-env", default="prod"),
    TraceTag("version", header="x-version"),
)


def head(*fields: bytes) -> RequestHead:
    raw = b"GET /a?b=1 HTTP/1.1\r\nHost: backend:80\r\n" + b"".join(f + b"\r\n" for f in fields)
    first = RequestParser().feed(raw + b"\r\n")[0]
    assert isinstance(first, RequestHead)
    return first


def listener(server: bool, shared: bool = False) -> Listener:
    return Listener(
        server,
        "web",
        "" if server else "backend",
        "localhost:8080" if server else "backend",
        "default.web-1",
        "default",
        "zone-1",
        TAGS,
        shared,
    )


def tracer(
    kind: str = "zipkin", server: bool = False, seed: int = 1, **conf: object
) -> tuple[Tracer, list[Span]]:
    spans: list[Span] = []
    t = Tracing(kind, "http://collector/x", "web", **conf)  # type: ignore[arg-type]
    shared = server and kind == "zipkin" and t.shared_span_context

    def offer(item: Pending) -> None:
        spans.append(span_of(item))

    return Tracer(t, listener(server, shared), offer, random.Random(seed)), spans


def traced(t: Tracer, h: RequestHead) -> Record:
    record = Record("outbound", "backend", h.method, h.target, h.version)
    record.head = h
    t.start(record, h)
    record.status, record.duration = 200, 0.002
    if record.trace is not None:
        t.finish(record)
    return record


def sent_fields(h: RequestHead) -> dict[bytes, bytes]:
    """The fields of the head as the sidecar sends it on."""
    again = RequestParser().feed(request_bytes(h))[0]
    assert isinstance(again, RequestHead)
    return {k.lower(): v for k, v in again.headers}


def test_a_new_trace_is_started_and_propagated_in_b3() -> None:
    t, spans = tracer()
    h = head(b"X-Env: staging")
    record = traced(t, h)
    assert record.trace is not None
    (span,) = spans
    assert len(span.trace_id) == 16 and len(span.span_id) == 16 and span.parent_id == ""
    fields = sent_fields(h)
    assert fields[b"x-b3-traceid"] == span.trace_id.encode()
    assert fields[b"x-b3-spanid"] == span.span_id.encode()
    assert fields[b"x-b3-sampled"] == b"1"
    assert h.raw  # spliced into the bytes as received: the fast path keeps them
    assert name_of(span) == "egress backend:80"
    tags = tags_of(span)
    assert tags["component"] == "proxy" and tags["upstream_cluster"] == "backend"
    assert tags["http.method"] == "GET" and tags["http.url"] == "http://backend:80/a?b=1"
    assert tags["http.status_code"] == "200" and tags["node_id"] == "default.web-1"
    assert (tags["kuma.mesh"], tags["kuma.zone"], tags["zone"]) == ("default", "zone-1", "zone-1")
    assert (tags["team"], tags["env"]) == ("core", "staging")
    assert "version" not in tags  # no header, no default: no tag


def test_128_bit_trace_ids_when_asked_and_for_w3c() -> None:
    t, spans = tracer(trace_id128bit=True)
    traced(t, head())
    assert len(spans[0].trace_id) == 32
    t, spans = tracer("otel")
    h = head()
    traced(t, h)
    (span,) = spans
    assert len(span.trace_id) == 32
    assert sent_fields(h)[b"traceparent"] == f"00-{span.trace_id}-{span.span_id}-01".encode()


def test_a_callers_context_is_continued_and_replaced() -> None:
    t, spans = tracer("otel", server=True)
    h = head(f"traceparent: 00-{TRACE}-{SPAN}-01".encode(), b"tracestate: a=b")
    traced(t, h)
    (span,) = spans
    assert (span.trace_id, span.parent_id) == (TRACE, SPAN)
    assert span.span_id != SPAN
    fields = sent_fields(h)
    assert fields[b"traceparent"] == f"00-{TRACE}-{span.span_id}-01".encode()
    assert fields[b"tracestate"] == b"a=b"  # passed on untouched
    assert list(k.lower() for k, _ in h.headers).count(b"traceparent") == 1
    assert name_of(span) == "ingress"


def test_zipkins_shared_span_context_reuses_the_callers_span() -> None:
    t, spans = tracer("zipkin", server=True)
    h = head(
        f"X-B3-TraceId: {TRACE}".encode(),
        f"X-B3-SpanId: {SPAN}".encode(),
        b"X-B3-ParentSpanId: " + b"c" * 16,
        b"X-B3-Sampled: 1",
    )
    traced(t, h)
    (span,) = spans
    assert (span.trace_id, span.span_id, span.parent_id, span.shared) == (
        TRACE,
        SPAN,
        "c" * 16,
        True,
    )
    assert sent_fields(h)[b"x-b3-spanid"] == SPAN.encode()


def test_the_callers_decision_is_kept() -> None:
    t, spans = tracer("otel", overall=0)
    h = head(f"traceparent: 00-{TRACE}-{SPAN}-01".encode())
    traced(t, h)
    assert len(spans) == 1  # sampled by the caller, though overall is 0
    t, spans = tracer("otel")
    h = head(f"traceparent: 00-{TRACE}-{SPAN}-00".encode())
    assert traced(t, h).trace is None and spans == []
    assert sent_fields(h)[b"traceparent"].endswith(b"-00")  # the callee learns it too


def test_overall_10_keeps_10_percent_of_1000_requests_and_propagates_the_rest() -> None:
    t, spans = tracer("zipkin", overall=10)
    heads = [head() for _ in range(1000)]
    for h in heads:
        traced(t, h)
    assert 50 <= len(spans) <= 150, len(spans)
    unsampled = sum(sent_fields(h)[b"x-b3-sampled"] == b"0" for h in heads)
    assert unsampled == 1000 - len(spans)


def test_client_sampling_for_requests_with_x_client_trace_id() -> None:
    t, spans = tracer("zipkin", client=100, random=0)
    traced(t, head())
    assert spans == []
    traced(t, head(b"x-client-trace-id: abc"))
    assert len(spans) == 1


def test_a_head_without_its_bytes_is_rebuilt() -> None:
    t, _ = tracer("datadog")
    h = head(b"X-Datadog-Trace-Id: 5", b"Connection: keep-alive")
    h.raw, h.hop = b"", None
    traced(t, h)
    fields = sent_fields(h)
    assert fields[b"x-datadog-trace-id"] != b"5"
    assert sum(k.lower() == b"x-datadog-trace-id" for k, _ in h.headers) == 1


def test_datadog_writes_w3c_and_its_own_headers() -> None:
    t, spans = tracer("datadog")
    h = head()
    traced(t, h)
    (span,) = spans
    fields = sent_fields(h)
    assert fields[b"traceparent"] == f"00-{span.trace_id}-{span.span_id}-01".encode()
    assert fields[b"x-datadog-parent-id"] == str(int(span.span_id, 16)).encode()


_NAMES = [b"traceparent", b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid"]
_NAMES += [b"x-b3-sampled", b"x-b3-flags", b"x-client-trace-id", b"x-datadog-trace-id"]
_VALUES = [
    f"00-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-00 ",
    f"00-{TRACE.upper()}-{SPAN}-01",
    f"01-{TRACE}-{SPAN}-01-x",
    f"00-{'0' * 32}-{SPAN}-01",
    TRACE,
    TRACE[16:],
    SPAN,
    "c" * 16,
    "0" * 16,
    "1",
    "0",
    "d",
    f"{TRACE}-{SPAN}-1",
    "junk",
]
_FIELD = st.tuples(
    st.sampled_from(_NAMES).flatmap(lambda n: st.sampled_from([n, n.title(), n.upper()])),
    st.sampled_from(_VALUES).map(str.encode),
)


def _mostly(usual: list[str], other: list[str]) -> st.SearchStrategy[str]:
    """One of `usual` four times in five, else one of `other`."""
    return st.integers(0, 4).flatmap(lambda i: st.sampled_from(usual if i else other))


_B3 = [  # what a sidecar's outbound writes (mostly), and variations of it
    (b"x-b3-traceid", _mostly([TRACE, TRACE[16:]], ["0" * 16, TRACE[1:]])),
    (b"x-b3-spanid", _mostly([SPAN], ["0" * 16, SPAN.upper()])),
    (b"x-b3-parentspanid", _mostly(["c" * 16], ["0" * 16, "junk"])),
    (b"x-b3-sampled", _mostly(["1", "0"], ["d", " 1"])),
]
_CASED = st.integers(0, 4).map(lambda i: bytes.lower if i else bytes.title)
_TRACEPARENT = st.tuples(
    _CASED.map(lambda case: case(b"traceparent")),
    _mostly(_VALUES[:2], [*_VALUES[2:5], f"00-{TRACE}-{'0' * 16}-01"]).map(str.encode),
).map(lambda field: [field])
_B3_FIELDS = st.tuples(
    *(st.tuples(_CASED.map(lambda c, n=n: c(n)), v.map(str.encode)) for n, v in _B3)
).flatmap(lambda b3: st.sampled_from([list(b3), [b3[0], b3[1], b3[3]], [b3[1], b3[0], b3[3]]]))
_OTHER = [(b"Accept", b"*/*"), (b"X-Env", b"b")]  # not trace context
_WHERE = st.tuples(st.sampled_from(["zipkin", "otel", "datadog"]), st.booleans(), st.booleans())


def _anywhere(fields: list[tuple[bytes, bytes]]) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return st.permutations(fields + _OTHER)


@settings(max_examples=400)
@given(
    st.one_of(  # (fields, (kind, server, shared span context))
        st.tuples(st.lists(_FIELD, max_size=5).flatmap(_anywhere), _WHERE),
        st.tuples(
            st.tuples(st.one_of(_B3_FIELDS, _TRACEPARENT), st.lists(_FIELD, max_size=1))
            .map(lambda u: u[0] + u[1])
            .flatmap(_anywhere),
            _WHERE,
        ),
        # as a sidecar's outbound sends them on, to the listeners that take them in place
        st.tuples(_B3_FIELDS.map(lambda b3: _OTHER + b3), st.just(("zipkin", True, True))),
        st.tuples(_TRACEPARENT.map(lambda w3c: _OTHER + w3c), st.just(("otel", True, False))),
    ),
)
def test_the_fast_paths_write_what_the_general_one_writes(
    case: tuple[list[tuple[bytes, bytes]], tuple[str, bool, bool]],
) -> None:
    """`start`'s shortcuts (a new trace, a sidecar's traceparent, Zipkin's shared B3) leave
    the request, its record, the drops and the random draws exactly as the general reading
    does (a backend that is up; a failing one's `start` changes nothing, tested below)."""
    fields, (kind, server, shared) = case
    lines = [name + b": " + value for name, value in fields]
    fast, general = head(*lines), head(*lines)
    conf = Tracing(kind, "http://collector/x", "web", shared_span_context=shared)  # type: ignore[arg-type]

    def make() -> Tracer:
        where = listener(server, server and kind == "zipkin" and shared)
        return Tracer(conf, where, drop, random.Random(7), Backend(False))

    fast_tracer, general_tracer = make(), make()
    fast_record, general_record = Record("inbound", "web"), Record("inbound", "web")
    fast_tracer.start(fast_record, fast)
    found = dict(_FIELDS.findall(general.raw.lower()))
    general_tracer._continue(general_record, general, found)  # `start` without shortcuts
    assert fast_record.trace == general_record.trace
    assert fast_tracer.gate.dropped == general_tracer.gate.dropped
    assert (fast.headers, fast.raw, fast.hop) == (general.headers, general.raw, general.hop)


class Backend:
    """An exporter's state as the tracer reads it (tracer.Gate)."""

    def __init__(self, failing: bool) -> None:
        self.failing, self.dropped = failing, 0


_APP_TRACEPARENT = b"traceparent: 00-" + TRACE.encode() + b"-" + SPAN.encode() + b"-01"
_APP_B3 = (b"X-B3-TraceId: " + TRACE.encode(), b"X-B3-SpanId: " + SPAN.encode(), b"X-B3-Sampled: 1")
_SIDECAR_B3 = (  # what a sidecar's outbound appends (Zipkin's shared span, read in place)
    b"x-b3-traceid: " + TRACE[16:].encode(),
    b"x-b3-spanid: " + SPAN.encode(),
    b"x-b3-sampled: 1",
)


def _as_received(h: RequestHead) -> tuple[object, ...]:
    return (h.raw, list(h.headers), h.hop, request_bytes(h))


def test_a_failing_backend_leaves_the_request_exactly_as_received() -> None:
    """Decision 186: no context read, no id, no header: the callee gets the application's
    own trace headers (or none) unchanged; each request the sampling would trace is one
    drop, and nothing is offered."""
    for kind in ("zipkin", "otel", "datadog"):
        for server in (False, True):
            for fields in ((), (_APP_TRACEPARENT,), _APP_B3, (b"X-Env: b", *_SIDECAR_B3)):
                offered: list[Pending] = []
                gate = Backend(True)
                conf = Tracing(kind, "http://c/x", "web")  # type: ignore[arg-type]
                shared = server and kind == "zipkin"
                t = Tracer(conf, listener(server, shared), offered.append, None, gate)
                h, before = head(*fields), head(*fields)
                record = traced(t, h)
                assert _as_received(h) == _as_received(before), (kind, server, fields)
                assert record.trace is None and gate.dropped == 1 and offered == []
                if fields == (_APP_TRACEPARENT,):  # the application's trace, continued by
                    assert sent_fields(h)[b"traceparent"] == _APP_TRACEPARENT[13:]  # the callee


def test_a_failing_backend_counts_what_its_sampling_would_trace() -> None:
    none, half = Backend(True), Backend(True)
    conf = Tracing("zipkin", "http://c/x", "web", overall=0)
    t = Tracer(conf, listener(False), drop, random.Random(1), none)
    for _ in range(100):
        traced(t, head())
    assert none.dropped == 0
    conf = Tracing("zipkin", "http://c/x", "web", overall=50)
    t = Tracer(conf, listener(False), drop, random.Random(1), half)
    for _ in range(1000):
        traced(t, head(b"X-B3-Sampled: 1"))  # the caller's decision is not read meanwhile
    assert 400 <= half.dropped <= 600  # the binomial's 99.9 % range is 448-552


def test_tracing_resumes_when_the_backend_is_back() -> None:
    gate = Backend(True)
    offered: list[Pending] = []
    t = Tracer(Tracing("zipkin", "http://c/x", "web"), listener(False), offered.append, None, gate)
    h = head()
    assert traced(t, h).trace is None and b"x-b3-traceid" not in sent_fields(h)
    gate.failing = False  # the exporter's retry opened a connection
    h = head()
    record = traced(t, h)
    assert record.trace is not None and len(offered) == 1 and gate.dropped == 1
    assert sent_fields(h)[b"x-b3-spanid"] == record.trace[1]


@settings(max_examples=200, deadline=None)  # a loaded machine: timing is not the point
@given(
    st.one_of(
        st.lists(_FIELD, max_size=5).flatmap(_anywhere),
        st.one_of(_B3_FIELDS, _TRACEPARENT).map(lambda f: _OTHER + f),
    ),
    _WHERE,
    st.sampled_from([100.0, 0.0]),
)
def test_a_failing_backends_start_changes_no_head(
    fields: list[tuple[bytes, bytes]], where: tuple[str, bool, bool], overall: float
) -> None:
    """Whatever the head (any context, any case, a sidecar's block or not), a failing
    backend's `start` leaves it, bytes and fields, as parsed; the record has no trace."""
    kind, server, shared = where
    lines = [name + b": " + value for name, value in fields]
    h, before = head(*lines), head(*lines)
    conf = Tracing(kind, "http://c/x", "web", overall=overall, shared_span_context=shared)  # type: ignore[arg-type]
    gate = Backend(True)
    t = Tracer(conf, listener(server, server and kind == "zipkin" and shared), drop, None, gate)
    record = traced(t, h)
    assert _as_received(h) == _as_received(before)
    assert record.trace is None and gate.dropped == (overall == 100.0)


def drop(item: Pending) -> None:
    pass


class _Counting(random.Random):
    """A seeded rng whose first id draws are all zeros; counts the sampling draws."""

    def __init__(self, zeros: int) -> None:
        super().__init__(3)
        self.zeros, self.draws = zeros, 0

    def getrandbits(self, k: int, /) -> int:
        if self.zeros:
            self.zeros -= 1
            return 0
        return super().getrandbits(k)

    def random(self) -> float:
        self.draws += 1
        return super().random()


def test_new_ids_are_drawn_in_pools_and_never_all_zeros() -> None:
    rng = _Counting(zeros=2)
    offered: list[Pending] = []
    conf = Tracing("otel", "http://c/x", "web")
    t = Tracer(conf, listener(False), offered.append, rng)
    ids = set()
    for _ in range(200):  # a few pools of 128-bit trace ids and 64-bit span ids
        traced(t, head())
    for _, record, _ in offered:
        assert record.trace is not None
        trace_id, span_id, _, _ = record.trace
        assert len(trace_id) == 32 and len(span_id) == 16
        assert int(trace_id, 16) and int(span_id, 16)  # hex, not all zeros
        ids |= {trace_id, span_id}
    assert len(ids) == 400 and rng.zeros == 0
    assert rng.draws == 0  # sampling 100 %: every request is traced, no draw is made
    t = Tracer(Tracing("otel", "http://c/x", "web", overall=50), listener(False), drop, rng)
    traced(t, head())
    assert rng.draws == 1
