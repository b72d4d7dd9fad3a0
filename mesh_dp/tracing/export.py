"""MeshTrace export, never on the data path.

A sampled request's `Span` is appended to the backend's bounded deque (full: dropped and
counted); one thread takes what it finds every POLL seconds, encodes a batch in the
backend's format and sends it (Zipkin v2 JSON, OTLP/HTTP protobuf or OTLP/gRPC, Datadog
agent v0.4 JSON). The request path takes no lock and wakes nobody. A backend that fails is
left alone for RETRY_SECONDS, its spans dropped unencoded and counted meanwhile: a collector
that is down costs the data path one append. The format modules are imported by the thread,
so a sidecar without such a backend never loads them (protobuf only for OpenTelemetry).

`Tracing.attach` gives each listener of a config its `Tracer`; a config without MeshTrace
detaches them and ends the exporter (queued spans are sent first).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from mesh_dp.tracing.span import Listener, Request, Span
from mesh_dp.tracing.tracer import Pending, Tracer, span_of
from meshfed.dpconfig.model import Inbound, Outbound, SidecarConfig
from meshfed.dpconfig.tracing import Tracing as TracingConf
from meshfed.proxy.promtext import Family, counter, gauge

if TYPE_CHECKING:
    import http.client

log = logging.getLogger("mesh_dp.tracing")

QUEUE_SPANS = 2_000  # each holds its request until sent: this bounds the memory
BATCH = 1_000
POLL = 0.05  # seconds between the exporter's looks at an empty queue
RETRY_SECONDS = 1.0
TIMEOUT = 2.0
MODULES = {"zipkin": "zipkin", "otel": "otlp", "datadog": "datadog"}


Encode = Callable[[list[Span], TracingConf], Request]
Send = Callable[[Request], None]


class HttpSender:
    """One kept HTTP/1.1 connection to the backend, reopened after a failure."""

    def __init__(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._where: tuple[str, str] = ("", "")

    def __call__(self, req: Request) -> None:
        parts = urlsplit(req.url)
        where = (parts.scheme, parts.netloc)
        if self._conn is None or where != self._where:
            self.close()
            import http.client  # only in an exporter's thread: a sidecar without one never loads it

            cls = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn, self._where = cls(parts.netloc, timeout=TIMEOUT), where
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            self._conn.request(req.method, path, req.body, req.headers)
            resp = self._conn.getresponse()
            resp.read()
        except BaseException:
            self.close()
            raise
        if resp.status >= 300:
            raise OSError(f"{req.method} {req.url}: HTTP {resp.status}")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None


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
        self.failing = False  # the backend failed less than RETRY_SECONDS ago: spans dropped
        self._thread = threading.Thread(
            target=self._run, name=f"trace {conf.kind} {conf.url}", daemon=True
        )
        self._thread.start()

    @property
    def key(self) -> tuple[str, str]:
        return (self.conf.kind, self.conf.url)

    def offer(self, span: Pending | Span) -> None:
        if self.failing or len(self.queue) >= self.capacity:
            self.dropped += 1
        else:
            self.queue.append(span)

    def close(self) -> None:
        """Sends what is queued, then the thread ends (a daemon: exit does not wait)."""
        self.closing = True

    def _take(self) -> list[Pending | Span]:
        q, items = self.queue, list[Pending | Span]()
        while q and len(items) < BATCH:
            items.append(q.popleft())
        return items

    def _run(self) -> None:
        module = importlib.import_module(f"mesh_dp.tracing.{MODULES[self.conf.kind]}")
        encode: Encode = module.encode
        send: Send = getattr(module, "sender", HttpSender)()
        try:
            while True:
                items = self._take()
                if self.failing and time.monotonic() >= self._retry_at:
                    self.failing = False
                if not items:
                    if self.closing:
                        return
                    time.sleep(POLL)
                    continue
                if self.failing:
                    self.dropped += len(items)  # queued before it failed: nothing to encode for
                    continue
                try:
                    spans = [i if isinstance(i, Span) else span_of(i) for i in items]
                    send(encode(spans, self.conf))
                except Exception as exc:  # a backend (or an encoding bug) must not end us
                    self.dropped += len(items)
                    self._retry_at = time.monotonic() + RETRY_SECONDS
                    self.failing = True
                    log.warning("trace %s %s: %s", self.conf.kind, self.conf.url, exc)
                    continue
                self.exported += len(items)
                self.batches += 1
        finally:
            close = getattr(send, "close", None)
            if close is not None:
                close()


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
        offer = self.exporter.offer
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
            x.http.tracer = Tracer(conf, part(True, "", f"localhost:{i.service_port}"), offer)
        for x, o in outbounds:
            x.http.tracer = Tracer(conf, part(False, o.service, o.service), offer)

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
            queued.add((e.conf.kind,), len(e.queue))
        for kind in sorted({k for k, _ in totals}):
            exported.add((kind,), totals[(kind, "exported")])
            dropped.add((kind,), totals[(kind, "dropped")])
        return [exported, dropped, queued]
