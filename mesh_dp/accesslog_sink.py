"""MeshAccessLog output: lines to files and TCP collectors, never on the data path.

A request (connection) that ends appends its `Event` and the backend's formatter to the
destination's bounded deque (full: the line is dropped and counted); one thread per
destination takes what it finds every POLL seconds, formats and writes it in batches. The
request path takes no lock and wakes nobody (a deque append is atomic). A file is opened for
appending once and reopened after an error; a TCP collector gets one connection, reconnected
(at most once a second) when it fails; while it is down, lines are dropped unformatted and
counted. So a slow disk or a collector that is down costs the data path one append.

`AccessLogs.attach` gives each listener of a config its sinks (the HTTP pipeline's
`access_log`, the listeners' `tcp_log`); destinations no config names any more are closed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from mesh_dp.accesslog_format import Event, Formatter, compile_format
from mesh_dp.http.accesslog import Record
from mesh_dp.malloc import trim
from mesh_dp.otlp.logs import OtelLogDestination
from mesh_dp.otlp.records import compile_record
from mesh_dp.relay import Link
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.observability import AccessLog, LogFormat
from meshfed.proxy.promtext import Family, counter, gauge

log = logging.getLogger("mesh_dp.accesslog")

QUEUE_LINES = 10_000  # per destination
BATCH = 512
POLL = 0.02  # seconds between the writer's looks at an empty queue
RECONNECT_SECONDS = 1.0
TCP_TIMEOUT = 2.0

DestKey = tuple[str, str]  # kind, target
Item = tuple[Formatter, Event]
Render = Callable[[Event], object]  # a Formatter, or an OTLP record's (mesh_dp/otlp/)


class Destination:
    """One file or TCP collector, written by its own thread from a bounded queue."""

    def __init__(self, kind: str, target: str, capacity: int = QUEUE_LINES) -> None:
        self.kind, self.target = kind, target
        self.capacity = capacity
        self.queue: collections.deque[Item] = collections.deque()
        self.closing = False
        self.written = 0
        self.dropped = 0
        self._file: Any = None
        self._sock: socket.socket | None = None
        self._next_connect = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"access-log {kind} {target}", daemon=True
        )
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Lines not written yet."""
        return len(self.queue)

    def offer(self, formatter: Formatter, event: Event) -> None:
        if len(self.queue) >= self.capacity:
            self.dropped += 1
        else:
            self.queue.append((formatter, event))

    def close(self) -> None:
        """Writes what is queued, then the thread ends (it is a daemon: exit does not wait)."""
        self.closing = True

    def _take(self) -> list[Item]:
        q, items = self.queue, list[Item]()
        while q and len(items) < BATCH:
            items.append(q.popleft())
        return items

    def _run(self) -> None:
        wrote = False  # since the heap was last trimmed
        while True:
            items = self._take()
            if not items:
                if self.closing:
                    self._shut()
                    return
                if wrote and trim():  # what the batches freed, back to the system
                    wrote = False
                time.sleep(POLL)
                continue
            wrote = True
            if self.kind == "tcp" and self._connected() is None:
                self.dropped += len(items)  # the collector is down: nothing to format for
                continue
            lines = []
            for fmt, event in items:
                try:
                    lines.append(fmt(event) + "\n")
                except Exception:  # a formatting bug must not end the writer
                    log.exception("access log %s %s: cannot format a line", self.kind, self.target)
                    self.dropped += 1
            if lines:
                self._write("".join(lines).encode("utf-8", errors="replace"), len(lines))

    def _write(self, data: bytes, n: int) -> None:
        try:
            if self.kind == "file":
                if self._file is None:
                    self._file = open(self.target, "ab")  # noqa: SIM115 (kept open)
                self._file.write(data)
                self._file.flush()
            else:
                sock = self._connected()
                if sock is None:
                    self.dropped += n
                    return
                sock.sendall(data)
            self.written += n
        except (OSError, ValueError) as exc:
            self.dropped += n
            log.warning("access log %s %s: %s", self.kind, self.target, exc)
            self._shut()

    def _connected(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        now = time.monotonic()
        if now < self._next_connect:
            return None
        self._next_connect = now + RECONNECT_SECONDS
        host, _, port = self.target.rpartition(":")
        try:
            self._sock = socket.create_connection((host.strip("[]"), int(port)), TCP_TIMEOUT)
        except (OSError, ValueError) as exc:
            log.warning("access log tcp %s: cannot connect: %s", self.target, exc)
            return None
        return self._sock

    def _shut(self) -> None:
        for thing in (self._file, self._sock):
            if thing is not None:
                with contextlib.suppress(OSError):
                    thing.close()
        self._file = self._sock = None


def _service(spiffe_id: str | None) -> str:
    """`spiffe://mesh/service` -> service; "" when unknown."""
    if not spiffe_id:
        return ""
    return spiffe_id.rsplit("/", 1)[-1]


def log_resource(config: SidecarConfig) -> list[tuple[str, str]]:
    """An OTLP LogRecord's resource: Kuma's (kuma.mesh, kuma.zone) and the attributes Envoy's
    OpenTelemetry access logger adds (log_name, zone_name, cluster_name, node_name)."""
    service = config.identity.rsplit("/", 1)[-1]
    return [
        ("kuma.mesh", config.mesh),
        ("kuma.zone", config.zone),
        ("service.name", service),
        ("log_name", "MeshAccessLog"),
        ("zone_name", config.zone),
        ("cluster_name", service),
        ("node_name", config.dataplane),
    ]


class AccessLogs:
    """The destinations the running config names and the sinks of each listener."""

    def __init__(self, stdout: Callable[[Record], None] | None = None) -> None:
        self.stdout = stdout  # `--access-log`
        self.destinations: dict[DestKey, Destination | OtelLogDestination] = {}
        self._formatters: dict[tuple[bool, LogFormat], Render] = {}

    def _targets(self, logs: Iterable[AccessLog]) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for a in logs:
            otel = a.kind == "otel"
            dest = self.destinations.get((a.kind, a.target))
            if dest is None:
                dest = OtelLogDestination(a.target) if otel else Destination(a.kind, a.target)
                self.destinations[(a.kind, a.target)] = dest
            fmt = self._formatters.get((otel, a.format))
            if fmt is None:
                fmt = compile_record(a.format) if otel else compile_format(a.format)
                self._formatters[(otel, a.format)] = fmt
            out.append((fmt, dest))
        return out

    def http_sink(
        self, logs: tuple[AccessLog, ...], mesh: str, source: str, destination: str
    ) -> Callable[[Record], None] | None:
        """The HTTP pipeline's `access_log` for a listener: `--access-log`, then each
        backend. `source` "" (an inbound): the caller's service, from the record."""
        stdout = self.stdout
        if not logs:
            return stdout
        targets = self._targets(logs)

        def sink(record: Record) -> None:
            if stdout is not None:
                stdout(record)
            now = time.time()
            event = Event(
                record.direction,
                mesh,
                source or _service(record.peer),
                destination,
                now - record.duration,
                record.duration,
                record.status,
                record.sent,
                0,
                record.upstream,
                record.head,
                record.version,
            )
            for fmt, dest in targets:
                dest.offer(fmt, event)

        return sink

    def tcp_sink(
        self, logs: tuple[AccessLog, ...], direction: str, mesh: str, source: str
    ) -> Callable[[Link, str, str], None] | None:
        """A listener's `tcp_log(link, destination service, upstream)` for its connections."""
        if not logs:
            return None
        targets = self._targets(logs)

        def sink(link: Link, destination: str, upstream: str) -> None:
            now = time.time()
            event = Event(
                direction,
                mesh,
                source or _service(link.a.peer),
                destination,
                link.started,
                now - link.started,
                0,
                link.sent,
                link.received,
                upstream,
            )
            for fmt, dest in targets:
                dest.offer(fmt, event)

        return sink

    def retain(self, config: SidecarConfig) -> None:
        """Closes the destinations `config` no longer names (after the listeners moved on)."""
        parts = [*(i.access_logs for i in config.inbounds)]
        parts += [o.access_logs for o in config.outbounds]
        wanted = {(a.kind, a.target) for logs in parts for a in logs}
        for key in [k for k in self.destinations if k not in wanted]:
            self.destinations.pop(key).close()
        for d in self.destinations.values():
            if isinstance(d, OtelLogDestination):
                d.resource = log_resource(config)
        if not wanted:
            self._formatters.clear()

    def collect(self) -> list[Family]:
        written = counter(
            "meshfed_dp_access_log_lines",
            "Access-log lines written, per MeshAccessLog destination.",
            ("kind", "target"),
        )
        dropped = counter(
            "meshfed_dp_access_log_dropped",
            "Access-log lines dropped (queue full, destination failing), per destination.",
            ("kind", "target"),
        )
        queued = gauge(
            "meshfed_dp_access_log_queued",
            "Access-log lines waiting to be written, per destination.",
            ("kind", "target"),
        )
        for (kind, target), d in sorted(self.destinations.items()):
            written.add((kind, target), d.written)
            dropped.add((kind, target), d.dropped)
            queued.add((kind, target), d.waiting)
        return [written, dropped, queued]
