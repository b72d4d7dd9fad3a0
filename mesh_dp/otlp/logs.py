"""MeshAccessLog's OpenTelemetry destination: LogRecords exported in batches by one thread per
endpoint, never on the data path (decision 142).

The request path appends (renderer, event) to a bounded deque (full: dropped and counted), as
the file and TCP destinations (mesh_dp/accesslog_sink.py) do; the thread takes up to BATCH
every POLL seconds, renders, encodes one ExportLogsServiceRequest (mesh_dp/otlp/wire.py: no
protobuf objects) and sends it. A failed
export drops its batch (counted) and, for RETRY_SECONDS, what arrives is dropped at the offer:
a collector that is down costs the data path one append and the sidecar no CPU to speak of.
The transport is imported by the thread on its first export.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from mesh_dp.accesslog_format import Event
from mesh_dp.malloc import trim
from mesh_dp.otlp.probe import ExportError, probe
from mesh_dp.otlp.records import RecordFn
from meshfed.policy.otlp import parse_endpoint

log = logging.getLogger("mesh_dp.otlp")

QUEUE_RECORDS = 2_000  # each holds its request until rendered: this bounds the memory
BATCH = 256  # a batch's records and messages are the encoder's working set (RSS)
POLL = 0.05
RETRY_SECONDS = 1.0

Item = tuple[RecordFn, Event]


class OtelLogDestination:
    """One OTLP collector of access logs (`kind` "otel", `target` the endpoint)."""

    kind = "otel"

    def __init__(self, target: str, capacity: int = QUEUE_RECORDS) -> None:
        self.target = target
        self.capacity = capacity
        self.queue: collections.deque[Item] = collections.deque()
        self.resource: Sequence[tuple[str, str]] = ()  # set by AccessLogs.retain
        self.closing = False
        self.written = 0
        self.dropped = 0
        self.endpoint = parse_endpoint(target)
        self._sender: Any = None  # a transport.Sender, made by the thread
        self._retry_at = 0.0
        self.failing = False  # the collector failed less than RETRY_SECONDS ago: dropped
        self._thread = threading.Thread(target=self._run, name=f"otlp logs {target}", daemon=True)
        self._thread.start()

    def offer(self, render: RecordFn, event: Event) -> None:
        if self.failing or len(self.queue) >= self.capacity:
            self.dropped += 1
        else:
            self.queue.append((render, event))

    def close(self) -> None:
        """Exports what is queued, then the thread ends."""
        self.closing = True

    def _take(self) -> list[Item]:
        q, items = self.queue, list[Item]()
        while q and len(items) < BATCH:
            items.append(q.popleft())
        return items

    def _run(self) -> None:
        sent = False  # since the heap was last trimmed
        while True:
            items = self._take()
            if self.failing and time.monotonic() >= self._retry_at:
                self.failing = False
            if not items:
                if self.closing:
                    if self._sender is not None:
                        self._sender.close()
                    return
                if sent and trim():  # what the batches freed, back to the system
                    sent = False
                time.sleep(POLL)
                continue
            if self.failing:
                self.dropped += len(items)  # the collector is down: nothing to render for
                continue
            self._export(items)
            sent = True

    def _export(self, items: list[Item]) -> None:
        if self._sender is None:
            try:  # nothing loaded for a collector that was never up (mesh_dp/otlp/probe.py)
                probe(self.endpoint.host, self.endpoint.port)
            except ExportError as exc:
                self._down(len(items), exc)
                return
        # lazy: http.client (and h2) only in a sidecar that exports
        from mesh_dp.otlp.transport import Sender
        from mesh_dp.otlp.wire import logs_request

        if self._sender is None:
            self._sender = Sender(self.endpoint)
        try:
            self._sender.connect()
        except ExportError as exc:
            self._down(len(items), exc)
            return
        records = []
        for render, event in items:
            try:
                records.append(render(event))
            except Exception:  # a rendering bug must not end the exporter
                log.exception("OTLP access log %s: cannot render a record", self.target)
                self.dropped += 1
        if not records:
            return
        try:
            self._sender.send("logs", logs_request(self.resource, records, time.time_ns()))
            self.written += len(records)
        except ExportError as exc:
            self._down(len(records), exc)
        except Exception:  # never let the exporter thread die
            self.dropped += len(records)
            log.exception("OTLP access log %s: export failed", self.target)

    def _down(self, lost: int, exc: Exception) -> None:
        self.dropped += lost
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self.failing = True
        log.warning("OTLP access log %s: %s", self.target, exc)
