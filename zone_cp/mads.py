"""Monitoring Assignment Discovery (MADS, decisions 162-163): which sidecars each Prometheus
scrapes, as Kuma's control plane tells Prometheus's `kuma_sd_configs`. Pure: the assignments
of a zone's Dataplanes and MeshMetrics, their versions per client, and the parsing of a
request; zone_cp/mads_server.py serves them over HTTP.

Kuma's semantics (pkg/mads/v1 in Kuma's source; https://kuma.io/docs/2.14.x/policies/meshmetric/):
each Dataplane's MeshMetrics are merged as the sidecar's config is, and every `Prometheus`
backend of the result gives one MonitoringAssignment (one target: the Dataplane's address and
the backend's port, path, and scheme `https` with `tls.mode: ProvidedTLS`) to the client its
`clientId` names; a backend without `clientId` belongs to the default client
`_kuma-default-client`, which also answers every Prometheus whose client id (the request's
`node.id`) no backend names. One assignment per Dataplane and client (Kuma keys them by
`/meshes/<mesh>/dataplanes/<name>`): the first backend of the merged list wins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from meshfed.dpconfig.observability import DEFAULT_METRICS_PATH, DEFAULT_METRICS_PORT
from meshfed.policy.merge import merge_confs
from meshfed.policy.rules import match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.common import as_list
from meshfed.resources.values import parse_duration

PATH: Final = "/v3/discovery:monitoringassignments"
TYPE_URL: Final = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
DEFAULT_CLIENT: Final = "_kuma-default-client"  # Kuma's id for backends without clientId
DEFAULT_FETCH_TIMEOUT: Final = 30.0  # Kuma's defaultFetchTimeout, when the query names none
MAX_FETCH_TIMEOUT: Final = 600.0  # a longer poll is cut here (Prometheus's default is 2m)
TYPES: Final = ("Dataplane", "MeshMetric")  # what the assignments are made of


class RequestError(ValueError):
    """A request MADS cannot answer (400, saying why)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One client's assignments (MonitoringAssignment in protobuf's JSON form, as `Any`) and
    their version, a hash of them: it changes exactly when they do."""

    version: str
    resources: tuple[dict[str, Any], ...]


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _assignment(dp: Resource, service: str, prom: Mapping[str, Any]) -> dict[str, Any]:
    tls = prom.get("tls")
    https = isinstance(tls, dict) and tls.get("mode") == "ProvidedTLS"
    address = dp.spec.get("networking", {}).get("address", "")
    port = prom.get("port") or DEFAULT_METRICS_PORT
    return {
        "@type": TYPE_URL,
        "mesh": dp.meta.mesh,
        "service": service,
        "targets": [
            {
                "name": dp.meta.name,
                "scheme": "https" if https else "http",
                "address": _host_port(address, port),
                "metrics_path": prom.get("path") or DEFAULT_METRICS_PATH,
                "labels": {},  # Kuma: MeshMetric's labels are added by the sidecar itself
            }
        ],
        "labels": {},
    }


def assignments(
    dataplanes: Iterable[Resource], meshmetrics: Sequence[Resource], zone: str
) -> dict[str, list[dict[str, Any]]]:
    """Client id -> its assignments, for the Dataplanes of `zone` (by mesh and name)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for dp in sorted(dataplanes, key=lambda d: (d.meta.mesh, d.meta.name)):
        if dp.meta.labels.get(LABEL_ZONE, zone) != zone:
            continue
        if not isinstance(dp.spec.get("networking", {}).get("address"), str):
            continue
        view = view_of(dp, zone)
        if not view.inbounds:
            continue
        matched = match(meshmetrics, view)
        if not matched:
            continue
        conf = merge_confs(
            m.policy.spec.get("default") or {} for m in matched if isinstance(m.policy.spec, dict)
        )
        seen: set[str] = set()
        for backend in as_list(conf.get("backends")):
            if not isinstance(backend, dict) or backend.get("type") != "Prometheus":
                continue
            prom = backend.get("prometheus")
            prom = prom if isinstance(prom, dict) else {}
            client = prom.get("clientId") or DEFAULT_CLIENT
            if client in seen:
                continue
            seen.add(client)
            out.setdefault(client, []).append(_assignment(dp, view.inbounds[0].service, prom))
    return out


def snapshots(by_client: Mapping[str, list[dict[str, Any]]]) -> dict[str, Snapshot]:
    """Each client's Snapshot; the default client always has one (maybe empty)."""
    out: dict[str, Snapshot] = {}
    for client, resources in {DEFAULT_CLIENT: [], **by_client}.items():
        text = json.dumps(resources, sort_keys=True, separators=(",", ":"))
        out[client] = Snapshot(hashlib.sha256(text.encode()).hexdigest()[:16], tuple(resources))
    return out


def pick(known: Mapping[str, Snapshot], client: str) -> Snapshot:
    """The Snapshot a client id gets: its own, else the default client's (Kuma's fallback)."""
    return known.get(client) or known[DEFAULT_CLIENT]


@dataclass(frozen=True, slots=True)
class Request:
    client: str  # `node.id`; "" when not sent
    version: str  # `version_info`: what the client already has


def parse_request(body: bytes) -> Request:
    """A DiscoveryRequest in protobuf's JSON form (proto or camelCase field names)."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RequestError("the body must be a JSON object (a DiscoveryRequest)")
    node = raw.get("node", {})
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise RequestError("`node` must be an object")
    client = node.get("id", "")
    version = raw.get("version_info", raw.get("versionInfo", ""))
    for name, value in (("node.id", client), ("version_info", version)):
        if value is not None and not isinstance(value, str):
            raise RequestError(f"`{name}` must be a string")
    return Request(client or "", version or "")


def parse_fetch_timeout(text: str | None) -> float:
    """The `fetch-timeout` query parameter (Go's duration form, as Prometheus sends it):
    seconds to hold a request whose client is up to date; 0 answers at once."""
    if text is None or text == "":
        return DEFAULT_FETCH_TIMEOUT
    nanos = parse_duration(text)
    if nanos is None:
        raise RequestError(f"fetch-timeout {text[:40]!r} is not a duration such as 30s or 2m")
    return min(max(nanos / 1e9, 0.0), MAX_FETCH_TIMEOUT)


def response(snapshot: Snapshot) -> dict[str, Any]:
    """A DiscoveryResponse in protobuf's JSON form (proto field names, as Kuma sends it)."""
    return {
        "version_info": snapshot.version,
        "resources": list(snapshot.resources),
        "type_url": TYPE_URL,
    }
