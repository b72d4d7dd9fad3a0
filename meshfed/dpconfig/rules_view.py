"""Kuma's inspect "rules" view of one dataplane (`GET .../dataplanes/{name}/_rules`, decision 138):
for each policy type, the merged `default` the config builder computes and the policies it came
from, per outbound service (`toRules`), per inbound and caller subset (`fromRules`), per inbound
for `rules` sections (`inboundRules`), and for types with a top-level `default` only
(`singleItemRules`).

Everything is computed by the same functions the builder calls (rules.match, outbound_conf,
inbound_conf, entries/merge_entries, http_route, tcp_route), so the view is what a sidecar is
sent, not a second reading of the specs. A type is shown by the sections its matched policies
use, so a policy type added later appears without a change here. Pure: no store, no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshfed.dpconfig.http_route import MESH_HTTP_ROUTE, http_route
from meshfed.dpconfig.policies import MESH_TCP_ROUTE, tcp_route
from meshfed.policy.merge import merge_confs
from meshfed.policy.rules import (
    Matched,
    Merged,
    caller_subset,
    display_name,
    entries,
    inbound_conf,
    match,
    merge_entries,
    outbound_conf,
    source_of,
)
from meshfed.policy.targetref import DataplaneView, InboundView, ServiceLabels, view_of
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.common import SERVICE_TAG, as_list

ROUTE_TYPES = (MESH_HTTP_ROUTE, MESH_TCP_ROUTE)


def _origin(merged_sources: Iterable[str], matched: Sequence[Matched]) -> list[dict[str, Any]]:
    """Kuma's `origin`: the contributing policies' metadata, in merge order (least priority
    first; the last one wins a conflict)."""
    by_source = {source_of(m.policy): m.policy for m in matched}
    out: list[dict[str, Any]] = []
    for source in merged_sources:
        policy = by_source.get(source)
        if policy is not None:
            out.append(
                {
                    "resourceMeta": {
                        "type": policy.type,
                        "mesh": policy.meta.mesh,
                        "name": policy.meta.name,
                        "displayName": display_name(policy),
                    }
                }
            )
    return out


def _matchers(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v, "not": False} for k, v in sorted(tags.items())]


def _rule(tags: Mapping[str, str], merged: Merged, matched: Sequence[Matched]) -> dict[str, Any]:
    return {
        "matchers": _matchers(tags),
        "conf": merged.conf,
        "origin": _origin(merged.sources, matched),
    }


def _inbound(view: InboundView) -> dict[str, Any]:
    return {"name": view.name, "port": view.port, "tags": dict(view.tags)}


def _sections(matched: Sequence[Matched]) -> set[str]:
    return {s for m in matched for s in ("to", "from", "rules", "default") if s in m.policy.spec}


def _to_rules(
    type_name: str, matched: Sequence[Matched], services: Mapping[str, ServiceLabels]
) -> list[dict[str, Any]]:
    """One rule per outbound service some `to[]` entry selects, with its merged conf."""
    by_type = {type_name: matched}
    out: list[dict[str, Any]] = []
    for service, labels in sorted(services.items()):
        tags = {SERVICE_TAG: service}
        if type_name == MESH_HTTP_ROUTE:
            route = http_route(by_type, service, labels)
            if route is not None:
                rules = [
                    {
                        "matches": [r.match],
                        "default": {
                            "filters": list(r.filters),
                            "backendRefs": [dataclasses.asdict(b) for b in r.backends],
                        },
                    }
                    for r in route.rules
                ]
                out.append(_rule(tags, Merged({"rules": rules}, route.sources), matched))
        elif type_name == MESH_TCP_ROUTE:
            tcp = tcp_route(by_type, service, labels)
            if tcp is not None:
                conf = {"backendRefs": [dataclasses.asdict(b) for b in tcp.backends]}
                out.append(_rule(tags, Merged(conf, tcp.sources), matched))
        else:
            merged = outbound_conf(matched, service, labels)
            if not merged.empty:
                out.append(_rule(tags, merged, matched))
    return out


def _callers(matched: Sequence[Matched], inbound: int) -> list[dict[str, str]]:
    """The distinct caller subsets the `from[]` entries selecting `inbound` name, in merge
    order (Mesh's empty subset first)."""
    seen: dict[str, dict[str, str]] = {}
    for e in entries(matched, "from", inbound):
        subset = caller_subset(e.target_ref)
        if subset is not None:
            seen.setdefault(json.dumps(subset, sort_keys=True), subset)
    return list(seen.values())


def _from_rules(view: DataplaneView, matched: Sequence[Matched]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inbound in view.inbounds:
        rules = [
            _rule(caller, inbound_conf(matched, inbound.index, caller), matched)
            for caller in _callers(matched, inbound.index)
        ]
        if rules:
            out.append({"inbound": _inbound(inbound), "rules": rules})
    return out


def _inbound_rules(view: DataplaneView, matched: Sequence[Matched]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inbound in view.inbounds:
        merged = merge_entries(entries(matched, "rules", inbound.index))
        if not merged.empty:
            out.append({"inbound": _inbound(inbound), "rules": [_rule({}, merged, matched)]})
    return out


def _single_item_rules(matched: Sequence[Matched]) -> list[dict[str, Any]]:
    """A top-level `default` (no `to`/`from`): merged over every matched policy."""
    with_default = [m for m in matched if isinstance(m.policy.spec.get("default"), dict)]
    if not with_default:
        return []
    conf = merge_confs(m.policy.spec["default"] for m in with_default)
    sources = tuple(dict.fromkeys(source_of(m.policy) for m in with_default))
    return [_rule({}, Merged(conf, sources), matched)]


def type_rules(
    type_name: str,
    matched: Sequence[Matched],
    view: DataplaneView,
    services: Mapping[str, ServiceLabels],
) -> dict[str, Any]:
    """The rules of one policy type for the dataplane, from its matched policies."""
    sections = _sections(matched)
    return {
        "type": type_name,
        "toRules": _to_rules(type_name, matched, services) if "to" in sections else [],
        "fromRules": _from_rules(view, matched) if "from" in sections else [],
        "inboundRules": _inbound_rules(view, matched) if "rules" in sections else [],
        "singleItemRules": _single_item_rules(matched) if "default" in sections else [],
        "warnings": [],
    }


def dataplane_rules(
    dataplane: Resource,
    zone: str,
    policies: Mapping[str, Sequence[Resource]],
    services: Mapping[str, ServiceLabels],
) -> list[dict[str, Any]]:
    """Kuma's `_rules` items for `dataplane` in `zone`: one per policy type (sorted by name)
    with at least one policy selecting it. `policies` maps type name to that type's policies;
    `services` the outbound services to show `toRules` for, with their labels (for `to[]`
    targetRefs by labels)."""
    view = view_of(dataplane, zone)
    out: list[dict[str, Any]] = []
    for type_name in sorted(policies):
        matched = match(policies[type_name], view)
        if matched:
            out.append(type_rules(type_name, matched, view, services))
    return out


def outbound_services(
    dataplanes: Iterable[Resource], policies: Iterable[Resource]
) -> dict[str, set[str]]:
    """The services of a mesh, each with the zones that have instances of it (from the
    Dataplanes' inbound tags and zone labels), plus every service a `to[]` targetRef names
    (a service with no instance yet still has an outbound rule)."""
    out: dict[str, set[str]] = {}
    for dp in dataplanes:
        zone = dp.meta.labels.get(LABEL_ZONE, "")
        for inbound in as_list((dp.spec.get("networking") or {}).get("inbound")):
            tags = inbound.get("tags") if isinstance(inbound, dict) else None
            service = tags.get(SERVICE_TAG) if isinstance(tags, dict) else None
            if isinstance(service, str):
                out.setdefault(service, set()).update({zone} if zone else set())
    for policy in policies:
        for to in as_list(policy.spec.get("to")):
            ref = to.get("targetRef") if isinstance(to, dict) else None
            name = ref.get("name") if isinstance(ref, dict) else None
            if isinstance(name, str):
                out.setdefault(name, set())
    return out
