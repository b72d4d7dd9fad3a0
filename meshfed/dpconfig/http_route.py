"""MeshHTTPRoute for one outbound: the rules of every matched route merged as Kuma merges them,
in the order a sidecar tries them (decisions 120, 125).

Merge: the matched routes' `to[]` entries selecting the outbound's service, least specific
first (the top-level targetRef's order from `match`, then the entry's targetRef kind, stably,
as MeshTCPRoute's); a rule's `matches` list is its key (equal JSON: the same rule), and a
later entry's `default` merges over an earlier one's as JSON (`filters` and `backendRefs`,
lists, are replaced whole).

Order: Kuma flattens each merged rule into one route per match and sorts them by Gateway API
precedence (Kuma's `CompareMatch`): an Exact path first, then the longer PathPrefix, then the
longer RegularExpression, then no path; ties: a method before none, then more headers, then
more query parameters; equal ones keep the merge order. The sidecar takes the first that
matches a request; none matching (or a rule without backendRefs) is the service itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from meshfed.dpconfig.model import HttpFilter, HttpMatch, HttpRule, RequestMirror, Split
from meshfed.dpconfig.policies import RouteBackend, route_backend
from meshfed.policy.merge import merge_confs
from meshfed.policy.rules import Matched, source_of, to_selects
from meshfed.policy.targetref import ServiceLabels, kind_rank
from meshfed.resources.types.common import as_list
from meshfed.resources.types.targetref import MESH

MESH_HTTP_ROUTE = "MeshHTTPRoute"

_PATH_RANK = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}
_NO_PATH = 3


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One match of a merged rule with the rule's filters and backends (Kuma's JSON)."""

    match: dict[str, Any]
    filters: tuple[dict[str, Any], ...] = ()
    backends: tuple[RouteBackend, ...] = ()  # none: the outbound's service


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """The effective MeshHTTPRoute of one outbound and the policies it came from."""

    rules: tuple[RouteRule, ...]
    sources: tuple[str, ...]


def precedence(match: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """Sort key of one match: lower comes first (Gateway API's precedence, Kuma's order)."""
    path = match.get("path")
    if isinstance(path, dict) and path.get("type") in _PATH_RANK:
        rank = _PATH_RANK[path["type"]]
        length = 0 if rank == 0 else -len(str(path.get("value", "")))
    else:
        rank, length = _NO_PATH, 0
    method = 0 if match.get("method") else 1
    return (
        rank,
        length,
        method,
        -len(as_list(match.get("headers"))),
        -len(as_list(match.get("queryParams"))),
    )


def _key(matches: Any) -> str:
    return json.dumps(matches, sort_keys=True, separators=(",", ":"))


def http_route(
    matched: Mapping[str, Sequence[Matched]],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> HttpRoute | None:
    """The merged, ordered MeshHTTPRoute rules of the outbound to `service` (to its
    MeshService port named `section`, when given); None when no route selects it."""
    found: list[tuple[dict[str, Any], list[Any], str]] = []
    for m in matched.get(MESH_HTTP_ROUTE, ()):
        for raw in as_list(m.policy.spec.get("to")):
            if not isinstance(raw, dict):
                continue
            ref = raw.get("targetRef")
            ref = ref if isinstance(ref, dict) else {"kind": MESH}
            if to_selects(ref, service, labels, section):
                found.append((ref, as_list(raw.get("rules")), source_of(m.policy)))
    if not found:
        return None
    found.sort(key=lambda f: kind_rank(f[0]))
    merged: dict[str, tuple[list[Any], list[dict[str, Any]]]] = {}
    sources: list[str] = []
    for _, rules, source in found:
        if source not in sources:
            sources.append(source)
        for rule in rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("matches"), list):
                continue
            default = rule.get("default")
            key = _key(rule["matches"])
            merged.setdefault(key, (rule["matches"], []))[1].append(
                default if isinstance(default, dict) else {}
            )
    out: list[RouteRule] = []
    for matches, defaults in merged.values():
        conf = merge_confs(defaults)
        filters = tuple(f for f in as_list(conf.get("filters")) if isinstance(f, dict))
        refs = [r for r in as_list(conf.get("backendRefs")) if isinstance(r, dict)]
        backends = tuple(route_backend(r) for r in refs)
        out += [RouteRule(m, filters, backends) for m in matches if isinstance(m, dict)]
    out.sort(key=lambda r: precedence(r.match))
    return HttpRoute(tuple(out), tuple(sources))


def _percent(value: Any) -> float:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 100.0


def config_filter(raw: Mapping[str, Any], split: Callable[[RouteBackend], Split]) -> HttpFilter:
    """A filter as the sidecar's config holds it: a mirror's backendRef resolved by `split`."""
    body = {k: v for k, v in raw.items() if k != "requestMirror"}
    mirror = raw.get("requestMirror")
    out = msgspec.convert(body, HttpFilter)
    if isinstance(mirror, dict) and isinstance(mirror.get("backendRef"), dict):
        percentage = mirror.get("percentage")
        backend = split(route_backend(mirror["backendRef"]))
        pct = 100.0 if percentage is None else min(100.0, max(0.0, _percent(percentage)))
        out = msgspec.structs.replace(out, request_mirror=RequestMirror(backend, pct))
    return out


def config_rules(route: HttpRoute, split: Callable[[RouteBackend], Split]) -> tuple[HttpRule, ...]:
    """The rules as the sidecar's config holds them, each backendRef a Split by `split`."""
    return tuple(
        HttpRule(
            match=msgspec.convert(r.match, HttpMatch),
            filters=tuple(config_filter(f, split) for f in r.filters),
            splits=tuple(split(b) for b in r.backends),
        )
        for r in route.rules
    )
