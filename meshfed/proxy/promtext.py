"""Prometheus text exposition (format 0.0.4) for the proxies' `/metrics`.

The proxies export a few counter and gauge families read at scrape time; prometheus_client
would cost a sidecar about 4 MiB of its 40 MB memory budget (docs/benchmarks.md) for what
is here a few dozen lines. The output matches prometheus_client's byte for byte (counters
named `<name>_total`, Go-style numbers), so dashboards see no difference; the control planes
keep prometheus_client.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    """One metric family; `add` one sample per label-value tuple."""

    name: str
    documentation: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    # histogram: (label values, upper bounds, count per bucket (not cumulative, +Inf last), sum)
    buckets: list[tuple[tuple[str, ...], Sequence[float], Sequence[int], float]] = field(
        default_factory=list
    )

    def add(self, values: Sequence[str], value: float) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.labels)} label values expected")
        self.samples.append((tuple(values), value))

    def observed(
        self, values: Sequence[str], bounds: Sequence[float], counts: Sequence[int], total: float
    ) -> None:
        """One histogram series: `counts[i]` observations in bucket i (+Inf last)."""
        if len(values) != len(self.labels) or len(counts) != len(bounds) + 1:
            raise ValueError(f"{self.name}: label values or bucket counts do not fit")
        self.buckets.append((tuple(values), tuple(bounds), tuple(counts), total))


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, documentation, "counter", tuple(labels))


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, documentation, "gauge", tuple(labels))


def histogram(name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, documentation, "histogram", tuple(labels))


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


class Registry:
    """The families of some collectors plus the process ones, rendered at each scrape."""

    def __init__(self, *collectors: Collector, process: bool = True) -> None:
        self._sources: list[Callable[[], Iterable[Family]]] = [c.collect for c in collectors]
        if process:
            self._sources.insert(0, process_families)

    def render(self) -> bytes:
        return render(f for source in self._sources for f in source())


def render(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    for f in families:
        name = f.name + "_total" if f.kind == "counter" else f.name
        out.append(f"# HELP {name} {_escape_help(f.documentation)}\n# TYPE {name} {f.kind}\n")
        for values, value in f.samples:
            out.append(_sample(name, list(zip(f.labels, values, strict=True)), value))
        for values, bounds, counts, total in f.buckets:
            pairs = list(zip(f.labels, values, strict=True))
            running = 0
            for bound, n in zip([*bounds, math.inf], counts, strict=True):
                running += n
                out.append(_sample(f"{name}_bucket", [*pairs, ("le", go_float(bound))], running))
            out.append(_sample(f"{name}_count", pairs, running))
            out.append(_sample(f"{name}_sum", pairs, total))
    return "".join(out).encode("utf-8")


def _sample(name: str, pairs: list[tuple[str, str]], value: float) -> str:
    if not pairs:
        return f"{name} {go_float(value)}\n"
    text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(pairs))
    return f"{name}{{{text}}} {go_float(value)}\n"


def go_float(value: float) -> str:
    """A number as Prometheus' Go clients write it (exponent from 1e6 up)."""
    d = float(value)
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def process_families() -> list[Family]:
    """The standard process_* metrics, from /proc/self (empty where /proc is missing)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().split(b")")[-1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
        fds = len(os.listdir("/proc/self/fd"))
    except (OSError, StopIteration, ValueError, IndexError):
        return []
    ticks = os.sysconf("SC_CLK_TCK")
    page = resource.getpagesize()
    # Fields after the command name: state is [0]; utime [11], stime [12], starttime [19],
    # vsize [20], rss [21] (pages).
    values = [
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(stat[20])),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", float(stat[21]) * page),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            float(stat[19]) / ticks + boot,
        ),
    ]
    families = [_one(gauge(n, d), v) for n, d, v in values]
    cpu = (float(stat[11]) + float(stat[12])) / ticks
    families.append(
        _one(
            counter("process_cpu_seconds", "Total user and system CPU time spent in seconds."), cpu
        )
    )
    families.append(_one(gauge("process_open_fds", "Number of open file descriptors."), fds))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    families.append(
        _one(gauge("process_max_fds", "Maximum number of open file descriptors."), soft)
    )
    return families


def _one(family: Family, value: float) -> Family:
    family.add((), value)
    return family
