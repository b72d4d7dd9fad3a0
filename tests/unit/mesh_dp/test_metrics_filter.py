"""MeshMetric `sidecar` settings on the sidecar's Prometheus text (mesh_dp/metrics_filter.py)."""

from __future__ import annotations

from mesh_dp.metrics_filter import select
from meshfed.dpconfig.observability import Metrics, Selector
from meshfed.proxy.promtext import counter, gauge, histogram, render


def text() -> str:
    used = counter("meshfed_dp_requests", "r", ("service",))
    used.add(("backend",), 3)
    used.add(("idle",), 0)
    never = counter("meshfed_dp_errors", "e")
    never.add((), 0)
    g = gauge("meshfed_dp_active", "a")
    g.add((), 0)
    h = histogram("meshfed_dp_latency_seconds", "l", ("service",))
    h.observed(("backend",), (0.1, 1.0), (1, 0, 0), 0.05)
    h.observed(("idle",), (0.1, 1.0), (0, 0, 0), 0.0)
    p = gauge("process_open_fds", "f")
    p.add((), 7)
    return render([used, never, g, h, p]).decode()


def names(out: str) -> list[str]:
    return [line.split(" ")[2] for line in out.splitlines() if line.startswith("# TYPE")]


def m(**kw: object) -> Metrics:
    return Metrics(address="127.0.0.1", **kw)  # type: ignore[arg-type]


def test_basic_profile_drops_process_series_and_unused_samples() -> None:
    out = select(text(), m())
    assert names(out) == [
        "meshfed_dp_requests_total",
        "meshfed_dp_active",
        "meshfed_dp_latency_seconds",
    ]
    assert 'meshfed_dp_requests_total{service="backend"} 3.0' in out
    assert "idle" not in out  # a counter at 0 and an empty histogram series: unused


def test_all_include_unused_keeps_everything() -> None:
    assert select(text(), m(profiles=("All",), include_unused=True)) == text()


def test_none_with_include_and_exclude() -> None:
    only = select(text(), m(profiles=("None",), include=(Selector("Exact", "process_open_fds"),)))
    assert names(only) == ["process_open_fds"]
    out = select(
        text(),
        m(
            exclude=(Selector("Regex", "meshfed_dp_.*_total"),),
            include=(Selector("Contains", "requests"),),
        ),
    )
    assert names(out) == [
        "meshfed_dp_requests_total",
        "meshfed_dp_active",
        "meshfed_dp_latency_seconds",
    ]
    out = select(text(), m(exclude=(Selector("Prefix", "meshfed_dp_l"),)))
    assert "latency" not in out


def test_sidecar_regex_keeps_the_families_it_matches_before_the_profiles() -> None:
    out = select(text(), m(regex="latency|requests", profiles=("All",), include_unused=True))
    assert names(out) == ["meshfed_dp_requests_total", "meshfed_dp_latency_seconds"]
