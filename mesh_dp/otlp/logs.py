"""MeshAccessLog's OpenTelemetry destination: LogRecords exported in batches by one thread per
endpoint, never on the data path (decision 142).

The request path appends (renderer, event) to a bounded deque (full: dropped and counted), as
the file and TCP destinations (mesh_dp/accesslog_sink.py) do; the thread takes what it finds
every POLL seconds and renders and encodes it at once as LogRecords (mesh_dp/otlp/wire.py: no
protobuf objects), so a queued request, which holds its head, is soon only its record's bytes;
one ExportLogsServiceRequest goes when it has BATCH records or BATCH_BYTES, or SEND_EVERY
after its first (decision 177). A failed
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
from mesh_dp.otlp.wire import SCOPE, Batch, observed, parts_record, resource, scope
from meshfed.policy.otlp import parse_endpoint

log = logging.getLogger("mesh_dp.otlp")

QUEUE_RECORDS = 2_000  # each holds its request until rendered: this bounds the memory
BATCH = 256  # records in one export request at most
BATCH_BYTES = 256 * 1024  # their encoded bytes at most (a record may carry head fields)
POLL = 0.01  # seconds between looks at an empty queue (a queued request holds its head)
IDLE_POLL = 0.05  # ... doubled up to this while it stays empty (no traffic, backend down)
SEND_EVERY = 0.05  # seconds a batch waits for more records (each request sent costs CPU)
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
        self._batch = Batch()  # the next batch, rendered and encoded
        self._size = 0  # its bytes
        self._due = 0.0  # when it is sent at the latest
        self.failing = False  # the collector failed less than RETRY_SECONDS ago: dropped
        self._thread = threading.Thread(target=self._run, name=f"otlp logs {target}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Records not exported yet: queued, or encoded into the next batch."""
        return len(self.queue) + self._batch.count

    def offer(self, render: RecordFn, event: Event) -> None:
        if self.failing or len(self.queue) >= self.capacity:
            self.dropped += 1
        else:
            self.queue.append((render, event))

    def close(self) -> None:
        """Exports what is queued, then the thread ends."""
        self.closing = True

    def _take(self, most: int) -> list[Item]:
        q, items = self.queue, list[Item]()
        while q and len(items) < most:
            items.append(q.popleft())
        return items

    def _run(self) -> None:
        sent = False  # since the heap was last trimmed
        wait = POLL  # the next sleep on an empty queue
        while True:
            now = time.monotonic()
            if self.failing and now >= self._retry_at:
                self.failing = False
            items = self._take(BATCH - self._batch.count)
            if items and self.failing:
                self.dropped += len(items)  # the collector is down: nothing to render for
                continue
            if items and self._ready(len(items)):
                self._encode(items)
            batch = self._batch
            if batch.count and (
                batch.count >= BATCH
                or self._size >= BATCH_BYTES
                or now >= self._due
                or self.closing
            ):
                self._batch, self._size = Batch(), 0
                self._send(batch)
                sent = True
                continue
            if not items:
                if self.closing and not self._batch.count:
                    if self._sender is not None:
                        self._sender.close()
                    return
                if sent and trim():  # what the batches freed, back to the system
                    sent = False
                time.sleep(wait)
                wait = min(wait * 2, IDLE_POLL)
            else:
                wait = POLL

    def _more(self) -> None:
        """While a batch's answer is awaited: render and encode what is queued."""
        if self._batch.count < BATCH and self._size < BATCH_BYTES:
            self._encode(self._take(BATCH - self._batch.count))

    def _ready(self, taken: int) -> bool:
        """The collector connected (the transport imported once it answered a probe: nothing
        loaded for one that was never up, mesh_dp/otlp/probe.py); else `taken` dropped."""
        try:
            if self._sender is None:
                probe(self.endpoint.host, self.endpoint.port)
                from mesh_dp.otlp.transport import Sender  # http.client, h2: only if it exports

                self._sender = Sender(self.endpoint)
            self._sender.connect()
        except ExportError as exc:
            self._down(taken, exc)
            return False
        return True

    def _encode(self, items: list[Item]) -> None:
        """Renders and encodes `items` into the next batch."""
        if not items:
            return
        if not self._batch.count:
            self._due = time.monotonic() + SEND_EVERY
        at = observed(time.time_ns())
        for render, event in items:
            try:
                data = parts_record(render(event), at)
            except Exception:  # a rendering bug must not end the exporter
                log.exception("OTLP access log %s: cannot render a record", self.target)
                self.dropped += 1
                continue
            self._size += self._batch.add(data)

    def _send(self, batch: Batch) -> None:
        n = batch.count
        try:
            self._sender.send(
                "logs", batch.request(resource(self.resource), scope(SCOPE)), self._more
            )
            self.written += n
        except ExportError as exc:
            self._down(n + self._batch.count, exc)
            self._batch, self._size = Batch(), 0
        except Exception:  # never let the exporter thread die
            self.dropped += n
            log.exception("OTLP access log %s: export failed", self.target)

    def _down(self, lost: int, exc: Exception) -> None:
        self.dropped += lost
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self.failing = True
        log.warning("OTLP access log %s: %s", self.target, exc)
