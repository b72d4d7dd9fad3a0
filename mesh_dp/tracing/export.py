"""MeshTrace export, never on the data path.

A sampled request's (listener, record, end) is appended to the backend's bounded deque
(full: dropped and counted); one thread takes what it finds every POLL seconds and encodes
it at once in the backend's format (Zipkin v2 JSON, OTLP protobuf, Datadog agent v0.4 JSON),
so a queued request, which holds its head, is soon only its span's bytes; the batch is sent
through mesh_dp/otlp/transport.py (the transport of the access logs' and metrics' OTLP
backends too) when it has BATCH spans or BATCH_BYTES, or SEND_EVERY after its first span
(decision 177). The request path takes no lock and wakes nobody. A backend that fails is
`failing` until a connection to it opens again: the thread tries one every RETRY_SECONDS,
sleeping in between, and meanwhile the hook leaves requests as they are and counts the spans
it does not make as dropped (decision 186): a collector that is down costs the data path one
attribute test. The thread also tries one connection when it starts, so a backend already
down is known before the first request. The format modules and the transport are imported
by the thread once a batch is due, so a sidecar without such a backend never loads them
(protobuf only for OpenTelemetry).

`Tracing.attach` gives each listener of a config its `Tracer`; a config without MeshTrace
detaches them and ends the exporter (queued spans are sent first).
"""

from __future__ import annotations

import collections
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from mesh_dp.malloc import trim
from mesh_dp.tracing.span import Encoder, Listener, Request, Span
from mesh_dp.tracing.tracer import Pending, Tracer, span_of
from meshfed.dpconfig.model import Inbound, Outbound, SidecarConfig
from meshfed.dpconfig.tracing import Tracing as TracingConf
from meshfed.proxy.promtext import Family, counter, gauge

log = logging.getLogger("mesh_dp.tracing")

QUEUE_SPANS = 1_000  # each holds its request until encoded: this bounds the memory
BATCH = 256  # spans in one export request at most
BATCH_BYTES = 256 * 1024  # its encoded spans' bytes at most (a span carries head fields)
POLL = 0.01  # seconds between the exporter's looks at an empty queue (what it holds: RSS)
IDLE_POLL = 0.05  # ... doubled up to this while it stays empty (no traffic, backend down)
SEND_EVERY = 0.05  # seconds a batch waits for more spans (each request sent costs CPU)
RETRY_SECONDS = 1.0
MODULES = {"zipkin": "zipkin", "otel": "otlp", "datadog": "datadog"}


class _AsSpans:
    """Zipkin's and Datadog's encoders take `Span`s: the queued records made into them."""

    def __init__(self, enc: Encoder[Span]) -> None:
        self.enc = enc

    def add(self, item: Pending | Span) -> int:
        return self.enc.add(item if isinstance(item, Span) else span_of(item))

    def take(self, conf: TracingConf) -> Request:
        return self.enc.take(conf)

    def clear(self) -> None:
        self.enc.clear()


def _format(conf: TracingConf) -> Encoder[Pending | Span]:
    """The batch encoder of the backend's format module (imported here, by the thread).
    OTLP is written from the queued records (decision 177); Zipkin's and Datadog's JSON
    from `Span`s."""
    module = importlib.import_module(f"mesh_dp.tracing.{MODULES[conf.kind]}")
    if conf.kind == "otel":
        enc: Encoder[Pending | Span] = module.Encoder()
        return enc
    if conf.kind == "datadog":
        return _AsSpans(module.Encoder(conf.split_service))
    return _AsSpans(module.Encoder())


class _Backend(NamedTuple):
    connect: Callable[[], None]
    send: Callable[[Request, Callable[[], None]], None]  # the request, what to do meanwhile
    close: Callable[[], None]


def _reachable(conf: TracingConf) -> None:
    """One TCP connect to the backend, closed at once; OSError while it is down. Before the
    first connection only: a sidecar whose backend never answers then loads no HTTP client,
    h2 or format module (~1.2 MiB of its RSS, docs/benchmarks.md)."""
    from mesh_dp.otlp.probe import probe
    from meshfed.policy.otlp import parse_endpoint

    if conf.kind == "otel":
        endpoint = parse_endpoint(conf.url)
        host, port = endpoint.host, endpoint.port
    else:
        parts = urlsplit(conf.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    probe(host, port)


def _backend(conf: TracingConf) -> _Backend:
    """The backend's connection, from mesh_dp/otlp/transport.py (imported here, by the thread:
    a sidecar without a backend loads no HTTP client, h2 or protobuf)."""
    from mesh_dp.otlp.transport import Sender, UrlSender
    from meshfed.policy.otlp import parse_endpoint

    if conf.kind == "otel":
        otlp = Sender(parse_endpoint(conf.url))
        return _Backend(
            otlp.connect, lambda req, idle: otlp.send("traces", req.body, idle), otlp.close
        )
    http, url = UrlSender(), conf.url
    return _Backend(
        lambda: http.connect(url),
        lambda req, idle: http.send(req.method, req.url, req.body, req.headers, idle),
        http.close,
    )


class Exporter:
    """One backend, sent to by its own thread from a bounded queue."""

    def __init__(self, conf: TracingConf, capacity: int = QUEUE_SPANS) -> None:
        self.conf = conf
        self.capacity = capacity
        self.queue: collections.deque[Pending | Span] = collections.deque()
        self.closing = False
        self.exported = 0
        self.dropped = 0
        self.batches = 0
        self._retry_at = 0.0
        # the backend's last connection or request failed and no connection opened since:
        # the tracers leave requests unchanged and count their spans dropped (decision 186)
        self.failing = False
        self._closed = threading.Event()  # `close` was called (ends a wait for the retry)
        self._held = self._size = 0  # spans encoded into the next batch, their bytes
        self._due = 0.0  # when that batch is sent at the latest
        self._thread = threading.Thread(
            target=self._run, name=f"trace {conf.kind} {conf.url}", daemon=True
        )
        self._thread.start()

    @property
    def key(self) -> tuple[str, str]:
        return (self.conf.kind, self.conf.url)

    @property
    def waiting(self) -> int:
        """Spans not sent yet: queued, or encoded into the next batch."""
        return len(self.queue) + self._held

    def offer(self, span: Pending | Span) -> None:
        if self.failing or len(self.queue) >= self.capacity:
            self.dropped += 1
        else:
            self.queue.append(span)

    def close(self) -> None:
        """Sends what is queued, then the thread ends (a daemon: exit does not wait); a
        failing backend's thread ends at once (what is queued would be dropped)."""
        self.closing = True
        self._closed.set()

    def _take(self, most: int) -> list[Pending | Span]:
        q, items = self.queue, list[Pending | Span]()
        while q and len(items) < most:
            items.append(q.popleft())
        return items

    def _add(self, enc: Encoder[Pending | Span], items: list[Pending | Span]) -> None:
        """Encodes `items` into the next batch (one that fails to encode: dropped, counted)."""
        if not self._held:
            self._due = time.monotonic() + SEND_EVERY
        for item in items:
            try:
                self._size += enc.add(item)
                self._held += 1
            except Exception:  # an encoding bug must not end the exporter
                self.dropped += 1
                log.exception("trace %s %s: cannot encode a span", self.conf.kind, self.conf.url)

    def _fail(self, exc: Exception) -> None:
        """The backend failed: `failing` until a connection opens, tried in RETRY_SECONDS."""
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self.failing = True
        log.warning(
            "trace %s %s: %s (retried every %.0f s; spans dropped, requests not traced meanwhile)",
            self.conf.kind,
            self.conf.url,
            exc,
            RETRY_SECONDS,
        )

    def _retried(self, connect: Callable[[], None]) -> bool:
        """While failing: what is queued dropped (offered before the failure was known), a
        wait until the retry, one connection. True once it opens (the backend is back)."""
        q = self.queue
        while q:
            q.popleft()
            self.dropped += 1
        if self._closed.wait(max(0.0, self._retry_at - time.monotonic())):
            return False  # closing: there is nothing to send
        try:
            connect()
        except Exception as exc:  # still down
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.debug("trace %s %s: still failing: %s", self.conf.kind, self.conf.url, exc)
            return False
        self.failing = False
        log.info("trace %s %s: reachable again, tracing resumes", self.conf.kind, self.conf.url)
        return True

    def _run(self) -> None:
        enc: Encoder[Pending | Span] | None = None
        backend: _Backend | None = None
        probed = False  # a probe opened a connection since the last failure
        sent = False  # since the heap was last trimmed
        wait = POLL  # the next sleep on an empty queue

        def more() -> None:  # while a batch's answer is awaited: encode what is queued
            if enc is not None and self._held < BATCH and self._size < BATCH_BYTES:
                self._add(enc, self._take(BATCH - self._held))

        def connect() -> None:
            """One connection: the probe until a batch loaded the backend's modules (none
            for a backend never up, decision 174), then the transport's own."""
            nonlocal probed
            if backend is None:
                _reachable(self.conf)
                probed = True
            else:
                backend.connect()

        try:
            try:
                connect()  # a backend down at the start: no request traced for nothing
            except Exception as exc:
                self._fail(exc)
            while True:
                if self.failing:
                    if self._retried(connect):
                        wait = POLL
                    elif self.closing:
                        return
                    continue
                now = time.monotonic()
                items = self._take(BATCH - self._held)
                took = bool(items)
                flying = 0  # the spans of the request being sent
                try:
                    if items:
                        if backend is None or enc is None:
                            if not probed:  # no module loaded for a backend never up
                                _reachable(self.conf)
                            enc = _format(self.conf)
                            backend = _backend(self.conf)
                        backend.connect()  # first: nothing made or encoded for a backend down
                        self._add(enc, items)
                        items = []
                    held = self._held
                    if held and (
                        held >= BATCH
                        or self._size >= BATCH_BYTES
                        or now >= self._due
                        or self.closing
                    ):
                        assert backend is not None and enc is not None
                        request, flying = enc.take(self.conf), held
                        self._held = self._size = 0
                        backend.send(request, more)
                        self.exported += flying
                        self.batches += 1
                        sent = True
                        continue
                except Exception as exc:  # a backend must not end us
                    self.dropped += flying + self._held + len(items)  # all taken, none sent
                    self._held = self._size = 0
                    if enc is not None:
                        enc.clear()
                    probed = False
                    self._fail(exc)
                    continue
                if not took:
                    if self.closing and not self._held:
                        return
                    if sent and not self._held and trim():  # freed by the batches: to the system
                        sent = False
                    time.sleep(wait)
                    wait = min(wait * 2, IDLE_POLL)
                else:
                    wait = POLL
        finally:
            if backend is not None:
                backend.close()


class _Proxy(Protocol):
    tracer: Tracer | None


class _Part(Protocol):
    @property
    def service(self) -> str: ...


class _Listener(Protocol):
    """An inbound or outbound listener of the sidecar (its config part and HTTP pipeline)."""

    @property
    def http(self) -> _Proxy: ...


class Tracing:
    """The running MeshTrace: its exporter and the tracers of the listeners."""

    def __init__(self) -> None:
        self.exporter: Exporter | None = None
        self._ended: dict[tuple[str, str], int] = collections.Counter()  # (kind, what)

    def attach(
        self,
        config: SidecarConfig,
        inbounds: Iterable[tuple[_Listener, Inbound]],
        outbounds: Iterable[tuple[_Listener, Outbound]],
    ) -> None:
        """Gives each listener its tracer for `config` (None without a MeshTrace)."""
        conf = config.tracing
        if not self._use(conf):
            for listener, _ in [*inbounds, *outbounds]:
                listener.http.tracer = None
            return
        assert conf is not None and self.exporter is not None
        exporter = self.exporter
        offer = exporter.offer
        node = f"{config.mesh}.{config.dataplane}"

        def part(server: bool, destination: str, cluster: str) -> Listener:
            assert conf is not None
            return Listener(
                server,
                conf.service,
                destination,
                cluster,
                node,
                config.mesh,
                config.zone,
                conf.tags,
                shared=server and conf.kind == "zipkin" and conf.shared_span_context,
            )

        for x, i in inbounds:
            inbound = part(True, "", f"localhost:{i.service_port}")
            x.http.tracer = Tracer(conf, inbound, offer, gate=exporter)
        for x, o in outbounds:
            x.http.tracer = Tracer(conf, part(False, o.service, o.service), offer, gate=exporter)

    def _use(self, conf: TracingConf | None) -> bool:
        """The exporter of `conf`'s backend (new when the backend changed), or none."""
        old = self.exporter
        if old is not None and (conf is None or old.key != (conf.kind, conf.url)):
            old.close()
            self._ended[(old.conf.kind, "exported")] += old.exported
            self._ended[(old.conf.kind, "dropped")] += old.dropped
            self.exporter = old = None
        if conf is None:
            return False
        if old is None:
            self.exporter = Exporter(conf)
        else:
            old.conf = conf
        return True

    def collect(self) -> list[Family]:
        exported = counter(
            "meshfed_dp_trace_spans_exported",
            "Spans sent to a MeshTrace backend, per kind of backend.",
            ("backend",),
        )
        dropped = counter(
            "meshfed_dp_trace_spans_dropped",
            "Spans dropped (queue full, backend failing), per kind of backend.",
            ("backend",),
        )
        queued = gauge("meshfed_dp_trace_spans_queued", "Spans waiting to be sent.", ("backend",))
        totals = collections.Counter(self._ended)
        e = self.exporter
        if e is not None:
            totals[(e.conf.kind, "exported")] += e.exported
            totals[(e.conf.kind, "dropped")] += e.dropped
            queued.add((e.conf.kind,), e.waiting)
        for kind in sorted({k for k, _ in totals}):
            exported.add((kind,), totals[(kind, "exported")])
            dropped.add((kind,), totals[(kind, "dropped")])
        return [exported, dropped, queued]
