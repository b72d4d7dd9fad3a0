"""The proxies' Prometheus text against prometheus_client's, byte for byte, on the same
families; and the process metrics as a Prometheus parser reads them."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from meshfed.proxy.promtext import Family, Registry, counter, gauge, go_float, render


def _reference(families: list[Family]) -> bytes:
    """The same families through prometheus_client."""

    class Same:
        def collect(self) -> Iterator[Metric]:
            for f in families:
                kind = CounterMetricFamily if f.kind == "counter" else GaugeMetricFamily
                m = kind(f.name, f.documentation, labels=list(f.labels))
                for values, value in f.samples:
                    m.add_metric(list(values), value)
                yield m

    registry = CollectorRegistry()
    registry.register(Same())
    return generate_latest(registry)


def _families() -> list[Family]:
    c = counter("meshfed_x_connections", "help with \\ and\nnewline", ["service", "port"])
    c.add(["web", "80"], 3)
    c.add(['odd"name\\with\nstuff', "1"], 1234567)
    g = gauge("meshfed_x_active", "open now", ["service"])
    g.add(["web"], 0)
    g.add(["db"], 0.25)
    empty = counter("meshfed_x_rejected", "nothing yet", ["reason"])
    bare = counter("meshfed_x_accepted", "no labels")
    bare.add([], 10**17)
    info = gauge("meshfed_x_info", "config", ["version"])
    info.add(["abc"], 1)
    return [c, g, empty, bare, info]


def test_output_matches_prometheus_client() -> None:
    assert render(_families()) == _reference(_families())


def test_numbers_are_written_as_go_writes_them() -> None:
    for value in (0, 1, 0.5, 999999, 1000000, 1234567.5, 10**20, float("inf"), -3, 1e-9):
        assert go_float(value) == _go_float_reference(value), value
    assert go_float(float("nan")) == "NaN"


def _go_float_reference(value: float) -> str:
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def test_process_metrics_parse_and_describe_this_process() -> None:
    text = Registry(process=True).render().decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    rss = parsed["process_resident_memory_bytes"].samples[0].value
    assert 1 << 20 < rss < 1 << 34
    assert parsed["process_open_fds"].samples[0].value == len(os.listdir("/proc/self/fd")) - 1 or (
        parsed["process_open_fds"].samples[0].value > 0
    )
    assert parsed["process_cpu_seconds"].type == "counter"
    assert parsed["process_start_time_seconds"].samples[0].value > 1.7e9


def test_a_sample_with_the_wrong_number_of_labels_is_refused() -> None:
    f = counter("m", "h", ["a", "b"])
    try:
        f.add(["only-one"], 1)
    except ValueError as exc:
        assert "2 label values" in str(exc)
    else:
        raise AssertionError("accepted a sample with too few label values")


def test_histograms_match_prometheus_client() -> None:
    from prometheus_client.core import HistogramMetricFamily

    from meshfed.proxy.promtext import histogram

    h = histogram("meshfed_x_seconds", "latency", ["service"])
    h.observed(["web"], (0.1, 1.0), (2, 0, 1), 3.5)

    class Same:
        def collect(self) -> Iterator[Metric]:
            m = HistogramMetricFamily("meshfed_x_seconds", "latency", labels=["service"])
            m.add_metric(["web"], [("0.1", 2), ("1.0", 2), ("+Inf", 3)], 3.5)
            yield m

    registry = CollectorRegistry()
    registry.register(Same())
    assert render([h]) == generate_latest(registry)
