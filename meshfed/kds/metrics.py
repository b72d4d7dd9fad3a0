"""KDS on `/metrics`: what went over each zone's streams, by resource type (issue 15).

One `KdsMetrics` per process (the global: every zone it serves; a zone: its own streams to
the global, labelled with its own name), its series in a registry of its own that the
composition root adds to the API's `/metrics` (`ApiContext.collectors`). Each stream takes a
`StreamMetrics` (`KdsMetrics.stream`), which `run_sender` / `run_receiver` feed as messages
pass, so the counters are monotonic across reconnects (the engines' own insight counters
start again with each stream).

The propagation histogram measures, on the sending side, from a resource's write (its
`modificationTime`, stamped by this process's store) to the peer's ACK of the response that
carried it: at the global, a policy PUT to each zone's ACK. Only resources written while the
stream was open count: what a reconnecting zone catches up on was not waiting on propagation
but on the zone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from meshfed.kds.messages import SyncResponse

# From a loopback round trip (milliseconds) to a zone that was busy for a minute.
PROPAGATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ACK, NACK = "ack", "nack"
UPSERT, REMOVE = "upsert", "remove"


class KdsMetrics:
    """The KDS series of one process (see the module docstring for their meaning)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        zone_type = ["zone", "type"]
        self.responses_sent = Counter(
            "meshfed_kds_responses_sent",
            "KDS responses this process sent, by zone and resource type.",
            zone_type,
            registry=self.registry,
        )
        self.responses_received = Counter(
            "meshfed_kds_responses_received",
            "KDS responses this process received, by zone and resource type.",
            zone_type,
            registry=self.registry,
        )
        self.replies_received = Counter(
            "meshfed_kds_replies_received",
            "ACKs and NACKs the peer sent for this process's responses (result: ack|nack).",
            [*zone_type, "result"],
            registry=self.registry,
        )
        self.replies_sent = Counter(
            "meshfed_kds_replies_sent",
            "ACKs and NACKs this process sent for the responses it received (result: ack|nack).",
            [*zone_type, "result"],
            registry=self.registry,
        )
        self.resources_sent = Counter(
            "meshfed_kds_resources_sent",
            "Resources sent in KDS responses (op: upsert|remove).",
            [*zone_type, "op"],
            registry=self.registry,
        )
        self.resources_received = Counter(
            "meshfed_kds_resources_received",
            "Resources received in KDS responses (op: upsert|remove).",
            [*zone_type, "op"],
            registry=self.registry,
        )
        self.bytes_sent = Counter(
            "meshfed_kds_response_bytes_sent",
            "Encoded size of the KDS responses sent.",
            zone_type,
            registry=self.registry,
        )
        self.bytes_received = Counter(
            "meshfed_kds_response_bytes_received",
            "Encoded size of the KDS responses received.",
            zone_type,
            registry=self.registry,
        )
        self.streams = Counter(
            "meshfed_kds_streams_started",
            "KDS streams started, by zone and direction (global-to-zone|zone-to-global); "
            "every one after a zone's first is a reconnect.",
            ["zone", "direction"],
            registry=self.registry,
        )
        self.propagation = Histogram(
            "meshfed_kds_propagation_seconds",
            "From a resource's write in this process's store to the peer's ACK of it "
            "(at the global: policy write to each zone's ACK).",
            zone_type,
            buckets=PROPAGATION_BUCKETS,
            registry=self.registry,
        )

    def forget(self, zone: str) -> None:
        """Drop every series of a deleted zone (a stream still closing counts into series no
        longer exported)."""
        for metric in (
            self.responses_sent,
            self.responses_received,
            self.replies_received,
            self.replies_sent,
            self.resources_sent,
            self.resources_received,
            self.bytes_sent,
            self.bytes_received,
            self.streams,
            self.propagation,
        ):
            metric.remove_by_labels({"zone": zone})

    def stream(self, zone: str, direction: str) -> StreamMetrics:
        """A stream of `zone` starts (counted now)."""
        self.streams.labels(zone, direction).inc()
        return StreamMetrics(self, zone)


def write_time(text: str) -> float | None:
    """A resource's RFC 3339 modification time as epoch seconds (None if absent or odd)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class _Sent:
    """The sending side's series of one zone and type, looked up once per stream (a
    `labels()` call takes a lock and a dict lookup: most of the cost of counting)."""

    def __init__(self, m: KdsMetrics, zone: str, type_name: str) -> None:
        labels = (zone, type_name)
        self.responses = m.responses_sent.labels(*labels)
        self.bytes = m.bytes_sent.labels(*labels)
        self.upserts = m.resources_sent.labels(*labels, UPSERT)
        self.removes = m.resources_sent.labels(*labels, REMOVE)
        self.acks = m.replies_received.labels(*labels, ACK)
        self.nacks = m.replies_received.labels(*labels, NACK)
        self.propagation = m.propagation.labels(*labels)


class _Received:
    """The receiving side's series of one zone and type (see `_Sent`)."""

    def __init__(self, m: KdsMetrics, zone: str, type_name: str) -> None:
        labels = (zone, type_name)
        self.responses = m.responses_received.labels(*labels)
        self.bytes = m.bytes_received.labels(*labels)
        self.upserts = m.resources_received.labels(*labels, UPSERT)
        self.removes = m.resources_received.labels(*labels, REMOVE)
        self.acks = m.replies_sent.labels(*labels, ACK)
        self.nacks = m.replies_sent.labels(*labels, NACK)


class StreamMetrics:
    """One stream of one zone, fed by the stream loops; remembers, per type, the write times
    of what is in flight until the peer answers."""

    def __init__(self, metrics: KdsMetrics, zone: str) -> None:
        self._m = metrics
        self.zone = zone
        self.started = metrics.clock()
        self._in_flight: dict[str, list[float]] = {}
        self._sent: dict[str, _Sent] = {}
        self._received: dict[str, _Received] = {}

    def _out(self, type_name: str) -> _Sent:
        series = self._sent.get(type_name)
        if series is None:
            series = self._sent[type_name] = _Sent(self._m, self.zone, type_name)
        return series

    def _in(self, type_name: str) -> _Received:
        series = self._received.get(type_name)
        if series is None:
            series = self._received[type_name] = _Received(self._m, self.zone, type_name)
        return series

    def response_sent(self, resp: SyncResponse, size: int) -> None:
        series = self._out(resp.type)
        series.responses.inc()
        series.bytes.inc(size)
        if resp.resources:
            series.upserts.inc(len(resp.resources))
        if resp.removed:
            series.removes.inc(len(resp.removed))
        written = (write_time(r.modification_time) for r in resp.resources)
        self._in_flight[resp.type] = [t for t in written if t is not None and t >= self.started]

    def reply_received(self, type_name: str, nack: bool) -> None:
        """The peer answered the response in flight of a type (not a stale reply)."""
        series = self._out(type_name)
        (series.nacks if nack else series.acks).inc()
        written = self._in_flight.pop(type_name, [])
        if nack or not written:
            return
        now = self._m.clock()
        for when in written:
            series.propagation.observe(max(0.0, now - when))

    def response_received(self, resp: SyncResponse, size: int) -> None:
        series = self._in(resp.type)
        series.responses.inc()
        series.bytes.inc(size)
        if resp.resources:
            series.upserts.inc(len(resp.resources))
        if resp.removed:
            series.removes.inc(len(resp.removed))

    def reply_sent(self, type_name: str, nack: bool) -> None:
        series = self._in(type_name)
        (series.nacks if nack else series.acks).inc()
