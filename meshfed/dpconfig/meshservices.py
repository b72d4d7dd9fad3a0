"""MeshService and MeshMultiZoneService as sidecar destinations (issue 17). Pure.

A zone resolves each MeshService it holds (its own, and other zones' copies relayed by the
global) and each MeshMultiZoneService into a `ServiceTarget`: its VIP in this zone, its ports
and the backends behind it, each a `kuma.io/service` in one zone (Kuma:
kuma.io/docs/latest/networking/meshservice/, "Multizone": traffic to a MeshService always goes
to that one zone; a MeshMultiZoneService balances over the zones of the MeshServices it
selects, the local one first).

- A MeshService selects its Dataplanes by `selector.dataplaneTags`. In its own zone, the
  local instances of the mesh carrying all those tags (and, when a port has a `targetPort`,
  listening on that port number, or whose inbound has that name); in another zone, that
  zone's ingress, which routes by `kuma.io/service` only: so a MeshService of another zone
  is reachable when its selector is exactly one `kuma.io/service` tag (what Kuma's
  generator makes), and has no endpoint otherwise.
- A MeshMultiZoneService's backends are the MeshServices its `selector.meshService.matchLabels`
  selects (by their labels here, with `kuma.io/display-name` and `kuma.io/zone` filled in).

`target_outbounds` turns the targets into one outbound per port on the target's VIP, with
the endpoints the builder resolves (`Resolver`, implemented by meshfed.dpconfig.build).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from meshfed.dpconfig.catalog import Catalog, ServiceEntry, VipKey
from meshfed.dpconfig.model import Endpoint, Locality, Outbound, OutboundPolicies
from meshfed.dpconfig.model import Protocol as Proto
from meshfed.dpconfig.observability import AccessLog
from meshfed.policy.rules import multi_zone_destination
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshfed.resources.types.common import SERVICE_TAG, as_list, dig

MESH_SERVICE: Final = "MeshService"
MESH_MULTI_ZONE_SERVICE: Final = "MeshMultiZoneService"
# The `zone` part of a VIP key that belongs to a MeshService / MeshMultiZoneService rather than
# to a `kuma.io/service` (zone names are lower case: these can never be one).
VIP_KIND: Final = {MESH_SERVICE: "MeshService", MESH_MULTI_ZONE_SERVICE: "MeshMultiZoneService"}
_PROTOCOLS: Final[dict[str, Proto]] = {
    "tcp": "tcp",
    "http": "http",
    "http2": "http2",
    "grpc": "grpc",
}


def vip_key(kind: str, mesh: str, name: str) -> VipKey:
    """The VIP key of a MeshService or MeshMultiZoneService (by its name in this zone)."""
    return VipKey(mesh, name, VIP_KIND[kind])


def is_target_key(key: VipKey) -> bool:
    """Whether a VIP key is a MeshService's or MeshMultiZoneService's (not a service tag's)."""
    return key.zone in VIP_KIND.values()


@dataclass(frozen=True, slots=True)
class TargetPort:
    port: int
    target_port: int | str | None
    name: str
    protocol: Proto


@dataclass(frozen=True, slots=True)
class Backend:
    """Instances of `service` (None: any service whose local instances carry `tags`) in
    `zone`; `target_ports` maps a target's port to the inbound port behind it."""

    service: str | None
    zone: str
    tags: tuple[tuple[str, str], ...] = ()
    target_ports: tuple[tuple[int, int | str | None], ...] = ()
    dataplane: str | None = None  # selector.dataplaneRef: that one Dataplane's instances


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    kind: str
    mesh: str
    name: str  # its name in this zone's store
    display_name: str
    zone: str | None  # a MeshService's zone; None for a MeshMultiZoneService
    vip: str
    ports: tuple[TargetPort, ...]
    backends: tuple[Backend, ...]

    @property
    def services(self) -> frozenset[str]:
        """The `kuma.io/service`s behind it (what a sidecar's reachable set names)."""
        return frozenset(b.service for b in self.backends if b.service is not None)


def effective_labels(res: Resource, local_zone: str) -> dict[str, str]:
    """A MeshService's labels as selectors see them: display name, zone and environment
    filled in (Kuma labels every resource created in a zone with them; meshfed's zones are
    Universal)."""
    return {
        LABEL_DISPLAY_NAME: res.meta.name,
        LABEL_ZONE: local_zone,
        "kuma.io/env": "universal",
        **res.meta.labels,
    }


def _spec(res: Resource) -> dict[str, Any]:
    spec = res.spec.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: dict[str, Any]) -> tuple[TargetPort, ...]:
    out: list[TargetPort] = []
    for raw in as_list(spec.get("ports")):
        port = dig(raw, "port")
        if not isinstance(port, int):
            continue
        target = dig(raw, "targetPort")
        name = dig(raw, "name")
        proto = dig(raw, "appProtocol")
        out.append(
            TargetPort(
                port,
                target if isinstance(target, int | str) else None,
                name if isinstance(name, str) and name else str(port),
                _PROTOCOLS.get(proto if isinstance(proto, str) else "tcp", "tcp"),
            )
        )
    return tuple(out)


def mesh_service_backend(res: Resource, local_zone: str) -> Backend | None:
    """What a MeshService selects, or None when its selector has no dataplaneTags."""
    zone = res.meta.labels.get(LABEL_ZONE) or local_zone
    targets = tuple((p.port, p.target_port) for p in _ports(_spec(res)))
    ref = dig(_spec(res), "selector", "dataplaneRef", "name")
    if isinstance(ref, str):
        return Backend(None, zone, (), targets, ref)
    tags = dig(_spec(res), "selector", "dataplaneTags")
    if not isinstance(tags, dict) or not tags:
        return None
    service = tags.get(SERVICE_TAG)
    rest = tuple(sorted((str(k), str(v)) for k, v in tags.items() if k != SERVICE_TAG))
    return Backend(service if isinstance(service, str) else None, zone, rest, targets)


def resolve_targets(
    local_zone: str,
    mesh_services: Iterable[Resource],
    multi_zone: Iterable[Resource],
    vips: Mapping[VipKey, str],
) -> tuple[ServiceTarget, ...]:
    """Every MeshService and MeshMultiZoneService of this zone that has a VIP here."""
    services = list(mesh_services)
    out: list[ServiceTarget] = []
    for res in services:
        vip = vips.get(vip_key(MESH_SERVICE, res.mesh, res.name))
        backend = mesh_service_backend(res, local_zone)
        if vip is None:
            continue
        labels = effective_labels(res, local_zone)
        out.append(
            ServiceTarget(
                MESH_SERVICE,
                res.mesh,
                res.name,
                labels[LABEL_DISPLAY_NAME],
                labels[LABEL_ZONE],
                vip,
                _ports(_spec(res)),
                () if backend is None else (backend,),
            )
        )
    for res in multi_zone:
        vip = vips.get(vip_key(MESH_MULTI_ZONE_SERVICE, res.mesh, res.name))
        if vip is None:
            continue
        backends = tuple(
            b
            for ms in selected_services(res, services, local_zone)
            if (b := mesh_service_backend(ms, local_zone)) is not None
        )
        out.append(
            ServiceTarget(
                MESH_MULTI_ZONE_SERVICE,
                res.mesh,
                res.name,
                res.meta.labels.get(LABEL_DISPLAY_NAME, res.name),
                None,
                vip,
                _ports(_spec(res)),
                backends,
            )
        )
    return tuple(sorted(out, key=lambda t: (t.mesh, t.kind, t.name)))


def selected_services(
    multi_zone: Resource, services: Sequence[Resource], local_zone: str
) -> list[Resource]:
    """The MeshServices (of its mesh) a MeshMultiZoneService selects, in name order."""
    match = dig(_spec(multi_zone), "selector", "meshService", "matchLabels")
    wanted = match if isinstance(match, dict) else {}
    return sorted(
        (
            ms
            for ms in services
            if ms.mesh == multi_zone.mesh
            and all(effective_labels(ms, local_zone).get(k) == v for k, v in wanted.items())
        ),
        key=lambda r: r.name,
    )


class Resolver(Protocol):
    """What the sidecar builder offers the targets (meshfed.dpconfig.build._Builder)."""

    zone: str
    catalog: Catalog

    def subset(
        self,
        entry: ServiceEntry,
        subset: Mapping[str, str],
        pinned: str | None,
        section: str | None = None,
        owner: str | None = None,
    ) -> list[Endpoint]: ...

    def port_policies(self, service: str, section: str) -> OutboundPolicies: ...

    def access_logs(self, service: str, section: str | None = None) -> tuple[AccessLog, ...]: ...

    def routing(
        self, service: str, protocol: Proto, section: str | None = None
    ) -> dict[str, Any]: ...


def _endpoints(
    b: Resolver, mesh: str, backend: Backend, port: TargetPort, owner: str | None = None
) -> list[Endpoint]:
    """`backend`'s endpoints for `port`; `owner`: the MeshMultiZoneService destination whose
    locality plan orders them (its crossZone failover, meshfed.policy.rules)."""
    target = dict(backend.target_ports).get(port.port)
    section = port.name
    tags = dict(backend.tags)
    found: list[Endpoint] = []
    if backend.dataplane is not None:  # one Dataplane: in its own zone only
        if backend.zone == b.zone:
            for each in b.catalog.services(mesh):
                mine = tuple(i for i in each.local if i.dataplane == backend.dataplane)
                if mine:
                    only = replace(each, local=mine, remote=())
                    found += b.subset(only, tags, b.zone, section)
    elif backend.service is not None:
        entry = b.catalog.get(mesh, backend.service)
        if entry is not None and owner is None:
            found = b.subset(entry, tags, backend.zone, section)
        elif entry is not None:  # the zones the multi-zone plan reaches, in its order
            every = b.subset(entry, tags, None, section, owner)
            found = [e for e in every if (e.zone or b.zone) == backend.zone]
    elif backend.zone == b.zone:  # no service tag: the local instances carrying the tags
        found = [
            e for each in b.catalog.services(mesh) for e in b.subset(each, tags, b.zone, section)
        ]
    if isinstance(target, int):  # an inbound by port: local instances listening on it
        found = [e for e in found if e.locality is Locality.REMOTE or e.port == target]
    elif isinstance(target, str):  # an inbound by name: local instances whose inbound has it
        named = _named_inbounds(b.catalog, mesh, target)
        found = [e for e in found if e.locality is Locality.REMOTE or (e.address, e.port) in named]
    return found


def port_split(
    b: Resolver,
    mesh: str,
    targets: Iterable[ServiceTarget],
    name: str,
    port: int,
    zone: str | None,
) -> tuple[str, list[Endpoint]] | None:
    """A backendRef `{kind: MeshService, name, port}` (decision 166): the service and
    endpoints of that port of the MeshService `name` (by display name: of `zone`, this
    zone when unpinned),
    found as its outbound finds them (another zone's through its ingress); None when there
    is no such port."""
    want = zone or b.zone
    for t in targets:
        if t.mesh != mesh or t.kind != MESH_SERVICE:
            continue
        # a synced one by its name in this zone's store, or by display name in `want`
        if t.name != name and (t.display_name != name or (t.zone or b.zone) != want):
            continue
        for p in t.ports:
            if p.port == port:
                found = [e for bk in t.backends for e in _endpoints(b, mesh, bk, p)]
                service = next(iter(sorted(t.services)), t.display_name)
                return service, list(dict.fromkeys(found))
    return None


def _named_inbounds(catalog: Catalog, mesh: str, name: str) -> set[tuple[str, int]]:
    """Where the local inbounds named `name` listen (Kuma: a `targetPort` that is a string
    names the Dataplane inbound, kuma.io/docs/latest/resources/meshservice/)."""
    return {(i.address, i.port) for e in catalog.services(mesh) for i in e.local if i.name == name}


def target_outbounds(
    b: Resolver,
    mesh: str,
    targets: Iterable[ServiceTarget],
    reachable: Collection[str] | None,
) -> list[Outbound]:
    """One outbound per port of every target of `mesh` (only those reaching a service in
    `reachable`, when set)."""
    out: list[Outbound] = []
    for t in targets:
        if t.mesh != mesh or (reachable is not None and not t.services & set(reachable)):
            continue
        service = next(iter(sorted(t.services)), t.display_name)
        multi = t.kind == MESH_MULTI_ZONE_SERVICE
        # a MeshMultiZoneService takes the policies naming it, not its services' (Kuma)
        owner = multi_zone_destination(t.name) if multi else None
        for p in t.ports:
            endpoints = [e for bk in t.backends for e in _endpoints(b, mesh, bk, p, owner)]
            # one backend per zone: an instance is listed once even if two MeshServices
            # of one zone select it
            endpoints = list(dict.fromkeys(endpoints))
            # routes to a MeshService port (decision 166); a multi-zone one takes none
            routing = {} if multi else b.routing(service, p.protocol, p.name)
            out.append(
                Outbound(
                    service=service,
                    address=t.vip,
                    port=p.port,
                    endpoints=tuple(endpoints),
                    policies=b.port_policies(owner or service, p.name),
                    zone=t.zone,
                    protocol=p.protocol,
                    access_logs=b.access_logs(owner or service, p.name),
                    **routing,
                )
            )
    return out
