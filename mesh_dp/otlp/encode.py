"""OTLP export requests as protobuf bytes, built with the OpenTelemetry protobufs
(opentelemetry-proto). Imported only by the exporters' threads, once a config names an
OpenTelemetry backend: protobuf and the OTLP messages cost a sidecar ~5 MiB (docs/benchmarks.md
has the RSS budget), which a sidecar without such a backend never pays.

Pure functions of their inputs: metrics from Prometheus families (mesh_dp/otlp/promparse.py):
counters as cumulative monotonic sums, gauges and untyped series as gauges, histograms with
explicit bounds, summaries with their quantiles. Access-log records and spans, one per
request, are written without the messages (mesh_dp/otlp/wire.py, decision 177).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from mesh_dp.otlp.promparse import PromFamily, histograms

Attributes = Sequence[tuple[str, str]]


def _strings(pairs: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in pairs]


def _numbers(f: PromFamily, start_ns: int, now_ns: int) -> list[NumberDataPoint]:
    return [
        NumberDataPoint(
            attributes=_strings(s.labels),
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            as_double=s.value,
        )
        for s in f.samples
    ]


def _summary(f: PromFamily, start_ns: int, now_ns: int) -> list[SummaryDataPoint]:
    points: dict[tuple[tuple[str, str], ...], SummaryDataPoint] = {}
    for s in f.samples:
        key = tuple((k, v) for k, v in s.labels if k != "quantile")
        p = points.get(key)
        if p is None:
            p = points[key] = SummaryDataPoint(
                attributes=_strings(key), start_time_unix_nano=start_ns, time_unix_nano=now_ns
            )
        q = next((v for k, v in s.labels if k == "quantile"), None)
        if s.name.endswith("_sum"):
            p.sum = s.value
        elif s.name.endswith("_count"):
            p.count = int(s.value)
        elif q is not None:
            p.quantile_values.add(quantile=float(q), value=s.value)
    return list(points.values())


def metric(f: PromFamily, start_ns: int, now_ns: int) -> Metric:
    """One Prometheus family as an OTLP Metric."""
    m = Metric(name=f.name, description=f.help)
    if f.kind == "counter":
        m.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
        m.sum.is_monotonic = True
        m.sum.data_points.extend(_numbers(f, start_ns, now_ns))
    elif f.kind == "histogram":
        m.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
        for h in histograms(f):
            m.histogram.data_points.add(
                attributes=_strings(h.labels),
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=h.count,
                sum=h.sum if math.isfinite(h.sum) else 0.0,
                bucket_counts=h.counts,
                explicit_bounds=h.bounds,
            )
    elif f.kind == "summary":
        m.summary.data_points.extend(_summary(f, start_ns, now_ns))
    else:  # gauge, untyped
        m.gauge.data_points.extend(_numbers(f, start_ns, now_ns))
    return m


def metrics_request(
    resource: Attributes,
    scopes: Iterable[tuple[str, Sequence[PromFamily]]],
    start_ns: int,
    now_ns: int,
) -> bytes:
    """One ExportMetricsServiceRequest: one resource, a scope per part (the sidecar's own
    series, then each application by name, as Kuma scopes them)."""
    rm = ResourceMetrics(resource=Resource(attributes=_strings(resource)))
    for name, families in scopes:
        sm = rm.scope_metrics.add()
        sm.scope.CopyFrom(InstrumentationScope(name=name))
        sm.metrics.extend(metric(f, start_ns, now_ns) for f in families)
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()
