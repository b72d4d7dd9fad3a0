"""KDS metrics: the per-stream accounting alone (a fake clock), then both ends over loopback
gRPC (tests/unit/kds/test_stream.py's harness) counting what passes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from meshfed.backoff import Backoff
from meshfed.kds.client import KdsClient
from meshfed.kds.messages import SyncResponse, WireResource, to_wire
from meshfed.kds.metrics import KdsMetrics
from meshfed.kds.receiver import Receiver
from meshfed.kds.server import KdsServer
from meshfed.kds.stream import ReceiveSide
from meshfed.resources.model import Key, Meta, Resource
from tests.support import free_port
from tests.unit.kds.test_stream import DOWN, MTP, UP, Hooks, Sink, policy, serving, until
from tests.unit.kds.zone_keys import KEYS


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def written_at(name: str, when: str) -> WireResource:
    return to_wire(Resource(MTP, Meta(name=name, mesh="default", modification_time=when), {}))


def value(m: KdsMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


# 2026-01-01T00:00:00Z as epoch seconds.
T0 = 1767225600.0


def test_a_forgotten_zone_leaves_no_series_and_others_keep_theirs() -> None:
    m = KdsMetrics(Clock(T0))
    for zone in ("gone", "kept"):
        stream = m.stream(zone, "global-to-zone")
        stream.response_sent(SyncResponse(MTP, [written_at("p", "")], [], "1"), 10)
        stream.reply_received(MTP, nack=True)
        m.stream(zone, "zone-to-global").response_received(SyncResponse(UP[0], [], [], "1"), 5)
    m.forget("gone")
    zones = {s.labels["zone"] for f in m.registry.collect() for s in f.samples}
    assert zones == {"kept"}
    stream.reply_sent(UP[0], nack=False)  # the kept zone's live series still count
    assert value(m, "meshfed_kds_replies_sent_total", zone="kept", type=UP[0], result="ack") == 1


def test_an_ack_observes_the_time_from_each_write_made_while_the_stream_was_open() -> None:
    clock = Clock(T0 + 5)
    m = KdsMetrics(clock)
    stream = m.stream("z1", "global-to-zone")
    old = written_at("old", "2026-01-01T00:00:01.000000Z")  # before the stream: a catch-up
    new = written_at("new", "2026-01-01T00:00:06.000000Z")
    stream.response_sent(SyncResponse(MTP, [old, new], [Key("default", "gone")], "1"), 120)
    clock.now = T0 + 6.25
    stream.reply_received(MTP, nack=False)
    labels = {"zone": "z1", "type": MTP}
    assert value(m, "meshfed_kds_propagation_seconds_count", **labels) == 1
    assert value(m, "meshfed_kds_propagation_seconds_sum", **labels) == 0.25
    assert value(m, "meshfed_kds_responses_sent_total", **labels) == 1
    assert value(m, "meshfed_kds_response_bytes_sent_total", **labels) == 120
    assert value(m, "meshfed_kds_resources_sent_total", **labels, op="upsert") == 2
    assert value(m, "meshfed_kds_resources_sent_total", **labels, op="remove") == 1
    assert value(m, "meshfed_kds_replies_received_total", **labels, result="ack") == 1
    assert value(m, "meshfed_kds_streams_started_total", zone="z1", direction="global-to-zone")


def test_a_nack_is_counted_and_observes_nothing() -> None:
    clock = Clock(T0)
    m = KdsMetrics(clock)
    stream = m.stream("z1", "global-to-zone")
    stream.response_sent(SyncResponse(MTP, [written_at("a", "2026-01-01T00:00:30Z")]), 10)
    stream.reply_received(MTP, nack=True)
    stream.reply_received(MTP, nack=False)  # nothing left in flight: counted, not observed
    labels = {"zone": "z1", "type": MTP}
    assert value(m, "meshfed_kds_replies_received_total", **labels, result="nack") == 1
    assert value(m, "meshfed_kds_propagation_seconds_count", **labels) == 0


def test_the_receiving_side_counts_responses_resources_bytes_and_replies() -> None:
    m = KdsMetrics()
    stream = m.stream("z1", "zone-to-global")
    stream.response_received(SyncResponse(MTP, [policy("a")], [Key("default", "b")]), 50)
    stream.reply_sent(MTP, nack=True)
    labels = {"zone": "z1", "type": MTP}
    assert value(m, "meshfed_kds_responses_received_total", **labels) == 1
    assert value(m, "meshfed_kds_response_bytes_received_total", **labels) == 50
    assert value(m, "meshfed_kds_resources_received_total", **labels, op="upsert") == 1
    assert value(m, "meshfed_kds_resources_received_total", **labels, op="remove") == 1
    assert value(m, "meshfed_kds_replies_sent_total", **labels, result="nack") == 1


async def test_both_ends_count_what_passes_over_a_real_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="meshfed.kds")
    port = free_port()
    hooks = Hooks()
    hooks.source.put(MTP, policy("good"))
    hooks.source.put(MTP, policy("bad"))
    at_global, at_zone = KdsMetrics(), KdsMetrics()
    kds = KdsServer(
        hooks, DOWN, authenticator=KEYS.authenticator(), health_interval=0.05, metrics=at_global
    )
    sink = Sink()
    client = KdsClient(
        f"127.0.0.1:{port}",
        "zone-1",
        up_types=UP,
        source=hooks.source,  # nothing of type Dataplane: the up stream only subscribes
        down=ReceiveSide(Receiver(DOWN), sink.apply, lambda r: "no" if r.name == "bad" else None),
        backoff=Backoff(initial=0.02, maximum=0.2),
        token=KEYS.token("zone-1"),
        metrics=at_zone,
    )
    labels = {"zone": "zone-1", "type": MTP}
    async with serving(kds, port):
        task = asyncio.create_task(client.run())
        try:
            await until(
                lambda: (
                    value(at_global, "meshfed_kds_replies_received_total", **labels, result="nack")
                    == 1
                ),
                "the global counted the zone's NACK",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert value(at_zone, "meshfed_kds_replies_sent_total", **labels, result="nack") == 1
    assert (
        value(at_global, "meshfed_kds_response_bytes_sent_total", **labels)
        == value(at_zone, "meshfed_kds_response_bytes_received_total", **labels)
        > 0
    )
    # Each end logs the NACK once, naming zone, type and reason as fields (--log-format json).
    for event in ("nack-received", "nack-sent"):
        [record] = [r for r in caplog.records if getattr(r, "event", None) == event]
        assert (record.zone, record.type) == ("zone-1", MTP)  # type: ignore[attr-defined]
        assert "'bad'" in record.reason  # type: ignore[attr-defined]
    for m in (at_global, at_zone):
        for direction in ("global-to-zone", "zone-to-global"):
            assert (
                value(m, "meshfed_kds_streams_started_total", zone="zone-1", direction=direction)
                == 1
            )
