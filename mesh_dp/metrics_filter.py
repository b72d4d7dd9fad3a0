"""MeshMetric `sidecar` on the sidecar's Prometheus text: profiles, exclude/include, unused
series. Pure: text in, text out (mesh_dp/metrics_endpoint.py serves it).

Profiles (Kuma's `appendProfiles`, Basic when none is given) over meshfed's families:
`Basic` is the mesh's own series (`meshfed_dp_*`: traffic, certificates, access logs),
`All` adds the process series (`process_*`), `None` is nothing. Then `exclude` removes
families whose name matches a selector and `include` brings back any family (even excluded),
Kuma's order. `includeUnused: false` (Kuma's default) drops counter samples still at 0 and
histogram series with no observation (Envoy's "used" is a stat written at least once; a
meshfed counter at 0 has never counted); gauges stay. Kuma's older `regex` (Envoy's
`/stats?filter=`, applied before the rest) keeps the families whose name it matches anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from meshfed.dpconfig.observability import Metrics, Selector

BASIC_PREFIX = "meshfed_dp_"

_LE = re.compile(r'(,?)le="[^"]*"')


@dataclass
class _Family:
    name: str
    kind: str = "untyped"
    header: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


def _families(text: str) -> list[_Family]:
    out: list[_Family] = []
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            name = line.split(" ", 3)[2]
            if not out or out[-1].name != name:
                out.append(_Family(name))
            if line.startswith("# TYPE "):
                out[-1].kind = line.split(" ", 3)[3].strip()
            out[-1].header.append(line)
        elif line and not line.startswith("#"):
            if not out:
                out.append(_Family(line.split("{", 1)[0].split(" ", 1)[0]))
            out[-1].samples.append(line)
    return out


def matches(selector: Selector, name: str) -> bool:
    if selector.type == "Exact":
        return name == selector.match
    if selector.type == "Prefix":
        return name.startswith(selector.match)
    if selector.type == "Contains":
        return selector.match in name
    try:
        return re.fullmatch(selector.match, name) is not None
    except re.error:
        return False


def _in_profiles(name: str, profiles: Sequence[str]) -> bool:
    chosen = set(profiles or ("Basic",))
    if "All" in chosen:
        return True
    return "Basic" in chosen and name.startswith(BASIC_PREFIX)


def _value(sample: str) -> float:
    try:
        return float(sample.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 1.0  # unreadable: keep it


def _series(sample: str) -> str:
    """A histogram sample's series: its labels without `le` (names without the suffix)."""
    labels = sample.split("{", 1)[1].rsplit("}", 1)[0] if "{" in sample else ""
    return _LE.sub("", labels).strip(",")


def _used(f: _Family) -> list[str]:
    if f.kind == "counter":
        return [s for s in f.samples if _value(s) != 0]
    if f.kind == "histogram":
        empty = {
            _series(s)
            for s in f.samples
            if s.split("{", 1)[0].split(" ", 1)[0].endswith("_count") and _value(s) == 0
        }
        return [s for s in f.samples if _series(s) not in empty]
    return f.samples


def select(text: str, m: Metrics) -> str:
    """The families and samples of `text` that MeshMetric `m` exposes."""
    out: list[str] = []
    regex = re.compile(m.regex) if m.regex else None
    for f in _families(text):
        if regex is not None and not regex.search(f.name):
            continue  # Kuma's `sidecar.regex`: before everything, as Envoy's stats filter
        keep = _in_profiles(f.name, m.profiles) and not any(matches(s, f.name) for s in m.exclude)
        if not keep and not any(matches(s, f.name) for s in m.include):
            continue
        samples = f.samples if m.include_unused else _used(f)
        if samples or m.include_unused:
            out += f.header + samples
    return "".join(line + "\n" for line in out)
