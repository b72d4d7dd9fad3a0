"""MeshMetric's OpenTelemetry backends: the sidecar pushes what a Prometheus scrape of it would
get (its own series after `sidecar`'s filters, then each application's) as OTLP metrics, every
`refreshInterval` (decision 143).

One asyncio task per backend gathers the parts on the loop (MetricsEndpoints.parts: the
registry render and the applications' scrapes, as a scrape does) and hands them to a worker
thread that parses, encodes and sends, so the loop that serves requests never encodes or
waits on a collector; a push still in flight when the next is due is not doubled (the
interval is measured from its end). `update` follows each config: a backend no config names
stops at once (its task is cancelled; a send in flight finishes on its thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mesh_dp.malloc import trim
from mesh_dp.otlp.probe import ExportError, probe
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.observability import MetricsPush
from meshfed.policy.otlp import Endpoint, parse_endpoint
from meshfed.proxy.promtext import Family, counter

log = logging.getLogger("mesh_dp.otlp")

Parts = Callable[[], Awaitable[list[tuple[str, bytes]]]]
SCOPE = "meshfed.mesh-dp"


def metric_resource(config: SidecarConfig) -> list[tuple[str, str]]:
    """The pushed metrics' resource: the sidecar's mesh, zone, service and Dataplane."""
    return [
        ("kuma.mesh", config.mesh),
        ("kuma.zone", config.zone),
        ("service.name", config.identity.rsplit("/", 1)[-1]),
        ("kuma.dataplane", config.dataplane),
    ]


def encode_parts(
    resource: Sequence[tuple[str, str]],
    parts: Sequence[tuple[str, bytes]],
    start_ns: int,
    now_ns: int,
) -> bytes:
    """One ExportMetricsServiceRequest from the scrape's parts (imports protobuf)."""
    from mesh_dp.otlp.encode import metrics_request
    from mesh_dp.otlp.promparse import parse

    scopes = [
        (name or SCOPE, parse(body.decode("utf-8", errors="replace"))) for name, body in parts
    ]
    return metrics_request(resource, scopes, start_ns, now_ns)


class _Pusher:
    def __init__(self, push: MetricsPush, parts: Parts, owner: MetricsPushes) -> None:
        self.push = push
        self.endpoint: Endpoint = parse_endpoint(push.endpoint)
        self._parts, self._owner = parts, owner
        self._sender: Any = None
        self.task = asyncio.create_task(self._run())

    def _send(self, resource: Sequence[tuple[str, str]], parts: list[tuple[str, bytes]]) -> None:
        if self._sender is None:  # nothing loaded for a collector never up (otlp/probe.py)
            probe(self.endpoint.host, self.endpoint.port)
        from mesh_dp.otlp.transport import Sender

        body = encode_parts(resource, parts, self._owner.start_ns, time.time_ns())
        if self._sender is None:
            self._sender = Sender(self.endpoint)
        self._sender.send("metrics", body)
        del body
        trim()  # what the encoding freed, back to the system (at most once a second)

    async def _run(self) -> None:
        target = self.push.endpoint
        try:
            while True:
                try:
                    parts = await self._parts()
                    await asyncio.to_thread(self._send, self._owner.resource, parts)
                    self._owner.pushed[target] = self._owner.pushed.get(target, 0) + 1
                except ExportError as exc:
                    self._owner.failed[target] = self._owner.failed.get(target, 0) + 1
                    log.warning("MeshMetric OpenTelemetry %s: %s", target, exc)
                except Exception:  # a bad application body must not end the pushes
                    self._owner.failed[target] = self._owner.failed.get(target, 0) + 1
                    log.exception("MeshMetric OpenTelemetry %s: push failed", target)
                await asyncio.sleep(self.push.interval)
        finally:
            if self._sender is not None:
                self._sender.close()


class MetricsPushes:
    """The running config's OpenTelemetry metric backends, one task each."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self.start_ns = time.time_ns()  # the cumulative sums' start: the sidecar's
        self.resource: list[tuple[str, str]] = []
        self._pushers: dict[MetricsPush, _Pusher] = {}
        self.pushed: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    async def update(self, config: SidecarConfig | None) -> None:
        wanted = config.metrics.pushes if config is not None and config.metrics else ()
        if config is not None:
            self.resource = metric_resource(config)
        for push in [p for p in self._pushers if p not in wanted]:
            task = self._pushers.pop(push).task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for push in wanted:
            if push not in self._pushers:
                self._pushers[push] = _Pusher(push, self._parts, self)

    async def close(self) -> None:
        await self.update(None)

    def collect(self) -> list[Family]:
        pushed = counter(
            "meshfed_dp_otlp_metric_pushes",
            "MeshMetric OpenTelemetry pushes the collector took, per endpoint.",
            ("endpoint",),
        )
        failed = counter(
            "meshfed_dp_otlp_metric_push_failures",
            "MeshMetric OpenTelemetry pushes that failed, per endpoint.",
            ("endpoint",),
        )
        for target in sorted({*self.pushed, *self.failed}):
            pushed.add((target,), self.pushed.get(target, 0))
            failed.add((target,), self.failed.get(target, 0))
        return [pushed, failed]
