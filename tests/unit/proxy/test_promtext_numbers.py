"""meshfed/proxy/promtext.py writes numbers as prometheus_client does (the module promises
byte-for-byte equal output), large counters included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from meshfed.proxy.promtext import counter, go_float, render

# Values Python's repr writes without an exponent but Go (and prometheus_client) with one of
# two digits or more: 1e10 up to just below 1e16. Byte counters reach 1e10 after 10 GB.
BIG = [1e10, 12_345_678_901, 2.5e15, 10**15 + 1]


@pytest.mark.parametrize("value", BIG, ids=str)
def test_large_numbers_are_written_as_prometheus_client_writes_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


def test_a_ten_gigabyte_counter_renders_as_prometheus_client_renders_it() -> None:
    family = counter("meshfed_x_sent_bytes", "Bytes sent", ["service"])
    family.add(["web"], 10_000_000_000)

    class Same:
        def collect(self) -> Iterator[Metric]:
            m = CounterMetricFamily("meshfed_x_sent_bytes", "Bytes sent", labels=["service"])
            m.add_metric(["web"], 10_000_000_000)
            yield m

    registry = CollectorRegistry()
    registry.register(Same())
    assert render([family]) == generate_latest(registry)


@pytest.mark.parametrize(
    "value", [0.0, -0.0, -1e10, 1e16, 1e22, 123456789.0, 5e-324, float("inf"), float("-inf")]
)
def test_other_edge_numbers_already_match(value: float) -> None:
    """Control: the rest of the number range agrees (so the case above is the only one)."""
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]
