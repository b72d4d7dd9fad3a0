"""Access-log lines."""

from __future__ import annotations

from mesh_dp.http.accesslog import Record, format_line
from mesh_dp.stats import HttpStats


def test_one_line_with_every_field_and_no_injection() -> None:
    r = Record("outbound", "backend", b"GET", b'/a b"\n', "1.1", 200, 512, 0.0032, "10.0.0.5:8080")
    line = format_line(r, 0.0)
    assert line == (
        '1970-01-01T00:00:00.000Z outbound backend "GET /a%20b%22%0A HTTP/1.1" 200 512 3.2ms '
        "upstream=10.0.0.5:8080 error=-"
    )
    assert "\n" not in line


def test_stats_count_status_classes_and_latency() -> None:
    h = HttpStats()
    h.observe(Record("inbound", "s", status=200, duration=0.0005))
    h.observe(Record("inbound", "s", status=503, duration=2.0, error="connect-failed"))
    h.observe(Record("inbound", "s", status=0, duration=20.0))
    assert h.statuses == {"2xx": 1, "5xx": 1, "none": 1}
    assert h.errors == {"connect-failed": 1}
    assert h.buckets[0] == 1 and h.buckets[-1] == 1 and sum(h.buckets) == 3
