"""Prometheus text (format 0.0.4) read back into families, for MeshMetric's OpenTelemetry
push: the sidecar's own series (after the policy's filters) and the applications' endpoints
are text, and the push sends what a scrape would get. Pure.

A sample belongs to the family whose `# TYPE` came last and whose name it extends
(`_bucket`, `_sum`, `_count`, `_total`, `_created`); a sample with no such family is a
family of its own, untyped. Timestamps on samples are ignored (the push stamps its time).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Sample:
    name: str
    labels: Labels
    value: float


@dataclass
class PromFamily:
    name: str
    kind: str = "untyped"  # counter, gauge, histogram, summary, untyped
    help: str = ""
    samples: list[Sample] = field(default_factory=list)


def _unescape(text: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], text)


def _labels(raw: str | None) -> Labels | None:
    if not raw:
        return ()
    inner, pos = raw[1:-1], 0
    out: list[tuple[str, str]] = []
    while pos < len(inner):
        m = _LABEL.match(inner, pos)
        if m is None:
            return None if inner[pos:].strip() else tuple(out)
        out.append((m.group(1), _unescape(m.group(2))))
        pos = m.end()
    return tuple(out)


def _number(text: str) -> float | None:
    try:
        return float(text)  # accepts +Inf, -Inf, NaN
    except ValueError:
        return None


def _owner(current: PromFamily | None, name: str) -> bool:
    if current is None:
        return False
    if name == current.name:
        return True
    return any(name == current.name + s for s in SUFFIXES)


def parse(text: str) -> list[PromFamily]:
    """The families of `text`; lines that do not parse are skipped."""
    families: list[PromFamily] = []
    current: PromFamily | None = None
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            elif len(parts) >= 4 and parts[1] == "TYPE":
                current = PromFamily(parts[2], parts[3].strip(), helps.get(parts[2], ""))
                families.append(current)
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, value = m.group(1), _labels(m.group(2)), _number(m.group(3))
        if labels is None or value is None:
            continue
        if not _owner(current, name):
            current = PromFamily(name, "untyped", helps.get(name, ""))
            families.append(current)
        assert current is not None
        if name.endswith("_created") and name != current.name:
            continue  # prometheus_client's creation stamps: not a value
        current.samples.append(Sample(name, labels, value))
    return [f for f in families if f.samples]


@dataclass
class Histogram:
    """One histogram series: bounds (no +Inf), per-bucket counts (+Inf last), sum, count."""

    labels: Labels
    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


@dataclass
class _Series:
    buckets: list[tuple[float, float]] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0


def histograms(f: PromFamily) -> list[Histogram]:
    """A histogram family's series, its cumulative `le` buckets turned into per-bucket counts."""
    series: dict[Labels, _Series] = {}
    for s in f.samples:
        le = next((v for k, v in s.labels if k == "le"), None)
        entry = series.setdefault(tuple((k, v) for k, v in s.labels if k != "le"), _Series())
        if s.name.endswith("_bucket") and le is not None:
            bound = _number(le)
            if bound is not None:
                entry.buckets.append((bound, s.value))
        elif s.name.endswith("_sum"):
            entry.sum = s.value
        elif s.name.endswith("_count"):
            entry.count = int(s.value)
    out = []
    for key, entry in series.items():
        buckets = sorted(entry.buckets)
        bounds = [b for b, _ in buckets if not math.isinf(b)]
        counts: list[int] = []
        before = 0.0
        for _, cumulative in buckets:
            counts.append(max(0, int(cumulative - before)))
            before = cumulative
        if len(counts) == len(bounds):  # no +Inf bucket given: the rest of the count
            counts.append(max(0, entry.count - int(before)))
        out.append(Histogram(key, bounds, counts, entry.sum, entry.count))
    return out
