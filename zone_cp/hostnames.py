"""The hostnames a zone gives its MeshServices, MeshMultiZoneServices and
MeshExternalServices (issue 17). Pure.

Every HostnameGenerator the zone holds renders its template for each service its selector
selects (`selector.meshService` / `selector.meshMultiZoneService` /
`selector.meshExternalService` `matchLabels`, against the service's labels with
`kuma.io/display-name` and `kuma.io/zone` filled in; a MeshMultiZoneService or
MeshExternalService belongs to no zone); a hostname answers with the service's VIP in this
zone. Kuma: kuma.io/docs/latest/networking/
hostnamegenerator/.

One hostname, one answer: when two services (or two generators' results for different
services) claim the same name, the service that sorts first (creation time, then mesh, kind
and name) keeps it and the others report the conflict in their status; a name the zone's
`<service>.mesh` names already hold stays theirs. The zone DNS is authoritative for `mesh`
and `mesh.local` only: a hostname outside them is reported, not answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from meshfed.dpconfig.catalog import VipKey
from meshfed.dpconfig.external import external_vip_key
from meshfed.dpconfig.meshservices import (
    MESH_MULTI_ZONE_SERVICE,
    MESH_SERVICE,
    effective_labels,
    vip_key,
)
from meshfed.resources.hostname_template import Part, Subject, TemplateError, parse_template, render
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshfed.resources.types.common import dig

DOMAINS: Final = ("mesh.local", "mesh")
MESH_EXTERNAL_SERVICE: Final = "MeshExternalService"
_SELECTOR_FIELD: Final = {
    MESH_SERVICE: "meshService",
    MESH_MULTI_ZONE_SERVICE: "meshMultiZoneService",
    MESH_EXTERNAL_SERVICE: "meshExternalService",
}
TargetId = tuple[str, str, str]  # (kind, mesh, name in this zone)


@dataclass(frozen=True, slots=True)
class Claim:
    hostname: str
    generator: str


@dataclass(frozen=True, slots=True)
class Refusal:
    generator: str
    reason: str  # Kuma's condition reason: "Conflict", "NotServed", "TemplateError"
    message: str


@dataclass(slots=True)
class Hostnames:
    records: dict[str, str] = field(default_factory=dict)  # hostname -> VIP
    addresses: dict[TargetId, list[Claim]] = field(default_factory=dict)
    refusals: dict[TargetId, list[Refusal]] = field(default_factory=dict)


def _served(hostname: str) -> bool:
    return any(hostname == d or hostname.endswith("." + d) for d in DOMAINS)


def _selects(generator: Resource, kind: str, labels: Mapping[str, str]) -> bool:
    selector = dig(generator.spec, "selector", _SELECTOR_FIELD[kind])
    if not isinstance(selector, dict):
        return False
    match = selector.get("matchLabels")
    wanted = match if isinstance(match, dict) else {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _vip_key(kind: str, mesh: str, name: str) -> VipKey:
    if kind == MESH_EXTERNAL_SERVICE:
        return external_vip_key(mesh, name)
    return vip_key(kind, mesh, name)


def _order(res: Resource) -> tuple[str, str, str]:
    return (res.meta.creation_time or "~", res.mesh, res.name)


def hostnames(
    zone: str,
    generators: Iterable[Resource],
    services: Iterable[tuple[str, Resource]],
    vips: Mapping[VipKey, str],
    taken: Mapping[str, str] = {},
) -> Hostnames:
    """The hostnames of `services` ((kind, resource) pairs) in `zone`; `taken`: names the
    zone answers already (its `<service>.mesh` names), which keep their answer."""
    parsed: list[tuple[str, tuple[Part, ...] | None, Resource]] = []
    for g in sorted(generators, key=lambda r: r.name):
        template = g.spec.get("template")
        try:
            parts = parse_template(template) if isinstance(template, str) else None
        except TemplateError:
            parts = None
        parsed.append((g.name, parts, g))
    out = Hostnames()
    owner: dict[str, TargetId] = {}
    for kind, res in sorted(services, key=lambda kr: (_order(kr[1]), kr[0])):
        tid: TargetId = (kind, res.mesh, res.name)
        vip = vips.get(_vip_key(kind, res.mesh, res.name))
        if vip is None:
            continue
        labels = effective_labels(res, zone)
        if kind != MESH_SERVICE:
            labels = {**labels, LABEL_ZONE: ""}
        subject = Subject(
            labels.get(LABEL_DISPLAY_NAME, res.name),
            labels.get(LABEL_ZONE, ""),
            res.mesh,
            labels,
            labels.get("k8s.kuma.io/namespace", ""),
        )
        for name, parts, g in parsed:
            if not _selects(g, kind, labels):
                continue
            if parts is None:
                out.refusals.setdefault(tid, []).append(
                    Refusal(name, "TemplateError", "the template cannot be evaluated")
                )
                continue
            hostname = render(parts, subject)
            if hostname is None:
                continue  # a value the template needs is missing: no hostname (as Kuma)
            refusal = _refusal(hostname, tid, owner, taken)
            if refusal is not None:
                out.refusals.setdefault(tid, []).append(Refusal(name, *refusal))
                continue
            if hostname not in owner:
                owner[hostname] = tid
                out.records[hostname] = vip
            out.addresses.setdefault(tid, []).append(Claim(hostname, name))
    return out


def _refusal(
    hostname: str, tid: TargetId, owner: Mapping[str, TargetId], taken: Mapping[str, str]
) -> tuple[str, str] | None:
    if not _served(hostname):
        return ("NotServed", f"{hostname}: the zone DNS answers names under .mesh.local or .mesh")
    if hostname in taken:
        return ("Conflict", f"{hostname} is already a kuma.io/service name of this zone")
    held = owner.get(hostname)
    if held is not None and held != tid:
        kind, mesh, name = held
        return ("Conflict", f"{hostname} is already the hostname of {kind} {name} (mesh {mesh})")
    return None
