"""Pure builders of the configs zone-cp streams to its proxies.

`build_sidecar_config(dataplane, zone, mesh, catalog, vips, policies, cert)`:
- one inbound per Dataplane inbound (sidecar listens on `address or networking.address` :
  `port`, forwards to `serviceAddress` (default 127.0.0.1) : `servicePort` (default `port`)),
  each with its compiled MeshTrafficPermission;
- one VIP outbound per catalog service of the mesh that has a VIP (`vips[VipKey(mesh,
  service)]`; `reachable` narrows the services), listening on the service's port (80 when
  no instance says) and also on port 80 when `port_80`; plus one per zone-pinned VIP
  (`VipKey(mesh, service, zone)`, the `<service>.<zone>.mesh` name) with that zone's
  endpoints only;
- one outbound per port of every MeshService and MeshMultiZoneService target on its VIP
  (meshfed/dpconfig/meshservices.py); the Mesh's `meshServices.mode` `Exclusive` drops the
  `kuma.io/service` VIP outbounds above;
- one outbound per explicit `networking.outbound` entry, on its address (default 127.0.0.1)
  and port. Its `kuma.io/service` tag names the service; `kuma.io/zone` pins a zone; any
  other tag selects local instances carrying it and excludes other zones, whose ingress
  routes by service and mesh only and so cannot honour a subset;
- endpoints: local instances directly; when the mesh has mTLS, each other zone's ingress
  with the SNI naming service and mesh and its instance count as weight. Without mTLS there
  is no cross-zone path (the ingress routes on the SNI of a TLS ClientHello; Kuma #4336);
- per outbound, the enforced fields of the policies that match (dpconfig/policies.py);
- per outbound of a service a MeshTCPRoute routes (not a zone-pinned one, whose caller chose
  the zone, nor an explicit one with subset tags), one `Split` per backendRef: its weight and
  the endpoints it resolves to, chosen as an explicit outbound's (a service's endpoints; a
  `kuma.io/zone` pin keeps that zone's; subset tags keep local instances only, the ingress
  routing by service and mesh alone). A ref naming no known service (or labels selecting
  none or several) gets no endpoints: its share of connections is closed;
- `tls` from `cert` (an issued meshfed.pki.Leaf) when the mesh has mTLS;
- `protocol`: an inbound's `kuma.io/protocol` tag; an outbound's, the tag its service's local
  instances carry most (ties: the first in order); tcp when absent or not one the sidecar
  knows (Kuma treats an unknown protocol as tcp).

The configs come back without a version: zone-cp encodes each once (model.encode_config),
and that encoding is what both the version and the bytes sent come from.

`policies` maps a policy type name (`MeshTimeout`, ...) to its resources; other meshes'
resources are ignored. Inputs that cannot make a config raise BuildError with the reason.

`build_ingress_config(ingress, zone, catalog, meshes)`: SNI -> local endpoints of every
service of a mesh with mTLS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec

from meshfed.dpconfig.catalog import (
    DEFAULT_SERVICE_ADDRESS,
    Catalog,
    LocalInstance,
    ServiceEntry,
    VipKey,
)
from meshfed.dpconfig.http_route import MESH_HTTP_ROUTE, config_rules, http_route
from meshfed.dpconfig.locality import LocalityPlan, plan_of
from meshfed.dpconfig.meshservices import ServiceTarget, port_split, target_outbounds
from meshfed.dpconfig.model import (
    Endpoint,
    HttpRule,
    Inbound,
    IngressConfig,
    IngressService,
    Locality,
    Outbound,
    OutboundKind,
    OutboundPolicies,
    Protocol,
    SidecarConfig,
    Split,
    Tls,
)
from meshfed.dpconfig.observability import (
    MESH_ACCESS_LOG,
    MESH_METRIC,
    AccessLog,
    inbound_access_logs,
    metrics,
    outbound_access_logs,
)
from meshfed.dpconfig.outbound_cache import MEMO
from meshfed.dpconfig.policies import (
    MESH_TCP_ROUTE,
    MESH_TIMEOUT,
    OUTBOUND_TYPES,
    RouteBackend,
    inbound_timeouts,
    tcp_route,
)
from meshfed.dpconfig.sni import SniError, encode_sni
from meshfed.dpconfig.tracing import MESH_TRACE, tracing
from meshfed.dpconfig.traffic_rules import (
    MESH_FAULT_INJECTION,
    MESH_RATE_LIMIT,
    compile_faults,
    compile_rate_limit,
)
from meshfed.pki.leaf import Leaf
from meshfed.pki.spiffe import PkiError, service_id
from meshfed.policy.permissions import compile_permissions
from meshfed.policy.rules import Matched, match
from meshfed.policy.targetref import (
    DataplaneView,
    ServiceLabels,
    labels_select,
    service_labels,
    tags_match,
    view_of,
)
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.common import PROTOCOL_TAG, SERVICE_TAG, as_list, dig

MESH_TRAFFIC_PERMISSION = "MeshTrafficPermission"
HTTP_PORT = 80
# a routed outbound: its service and MeshService port name (None: the service's own)
_RouteKey = tuple[str, str | None]


class BuildError(ValueError):
    """The inputs cannot make a config; the message says why."""


def mtls_enabled(mesh: Resource) -> bool:
    backend = dig(mesh.spec, "mtls", "enabledBackend")
    return isinstance(backend, str) and bool(backend)


def mesh_services_mode(mesh: Resource) -> str:
    """The Mesh's `meshServices.mode` (Kuma's default: Disabled)."""
    mode = dig(mesh.spec, "meshServices", "mode")
    return mode if isinstance(mode, str) else "Disabled"


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tls(cert: Leaf | None, identity: str, mesh: str) -> Tls:
    if cert is None:
        raise BuildError(f"mesh {mesh!r} has mTLS enabled but no certificate was issued")
    if cert.spiffe_id != identity:
        raise BuildError(f"certificate names {cert.spiffe_id}, the dataplane is {identity}")
    return Tls(
        cert_pem=cert.cert_pem.decode(),
        key_pem=cert.key_pem.decode(),
        ca_pems=(cert.ca_pem.decode(),),
        expires_at=_rfc3339(cert.cert.not_valid_after_utc),
    )


def _sni(service: str, mesh: str) -> str | None:
    try:
        return encode_sni(service, mesh)
    except SniError:
        return None  # a name that fits no SNI cannot cross zones


_PROTOCOLS: dict[str, Protocol] = {"tcp": "tcp", "http": "http", "http2": "http2", "grpc": "grpc"}


def as_protocol(value: str) -> Protocol:
    """The protocol a `kuma.io/protocol` value names; tcp when unknown."""
    return _PROTOCOLS.get(value.lower(), "tcp")


def protocol_of(tags: Mapping[str, Any]) -> Protocol:
    """The protocol a `kuma.io/protocol` tag names; tcp when absent or unknown."""
    return as_protocol(str(tags.get(PROTOCOL_TAG, "tcp")))


def _local(
    instances: Sequence[LocalInstance], zone: str, plan: LocalityPlan | None = None
) -> list[Endpoint]:
    return [
        Endpoint(i.address, i.port, zone, affinity=plan.affinity(i.tags) if plan else 0)
        for i in instances
    ]


def _remote(
    entry: ServiceEntry, local_zone: str, plan: LocalityPlan | None = None
) -> list[Endpoint]:
    """Other zones' ingresses; with a `plan`, in its failover order and only the zones it
    reaches (without one: a `<service>.<zone>.mesh` outbound, which names its zone)."""
    sni = _sni(entry.service, entry.mesh)
    if sni is None:
        return []
    zones = {r.zone for r in entry.remote}
    out: list[Endpoint] = []
    for r in entry.remote:
        priority = 0 if plan is None else plan.zone_priority(r.zone, zones)
        if r.zone == local_zone or priority is None:
            continue
        out.append(
            Endpoint(r.address, r.port, r.zone, r.instances, Locality.REMOTE, True, sni, priority)
        )
    return out


class _Builder:
    """The state of one sidecar build: matched policies and per-service policy cache."""

    def __init__(
        self,
        view: DataplaneView,
        zone: str,
        mtls: bool,
        catalog: Catalog,
        matched: Mapping[str, Sequence[Matched]],
        targets: Sequence[ServiceTarget] = (),
    ) -> None:
        self.view = view
        self.targets = targets  # MeshServices, for backendRefs by port (decision 166)
        self.zone = zone
        self.mtls = mtls
        self.catalog = catalog
        self.matched = matched
        self._policies: dict[str, OutboundPolicies] = {}
        self._routes: dict[_RouteKey, tuple[tuple[Split, ...], tuple[str, ...]]] = {}
        self._http_routes: dict[_RouteKey, tuple[tuple[HttpRule, ...], tuple[str, ...]]] = {}
        self._plans: dict[str, LocalityPlan] = {}
        # the caller's tags for localZone affinity: its inbounds', the first one's first
        self.caller: dict[str, str] = {}
        for inbound in reversed(view.inbounds):
            self.caller.update(inbound.tags)

    def labels(self, service: str) -> ServiceLabels:
        entry = self.catalog.get(self.view.mesh, service)
        zones = entry.zones(self.zone) if entry is not None else ()
        return service_labels(self.view.mesh, service, zones)

    def plan(self, service: str, section: str | None = None) -> LocalityPlan:
        """The locality plan of `service`'s outbound (of its MeshService port `section`)."""
        key = service if section is None else f"{service}\x00{section}"
        if key not in self._plans:
            labels = self.labels(service)
            conf = MEMO.load_balancing_conf(self.matched, service, labels, section)
            self._plans[key] = plan_of(conf, self.zone, self.caller)
        return self._plans[key]

    def policies(self, service: str) -> OutboundPolicies:
        if service not in self._policies:
            plan = self.plan(service)
            self._policies[service] = msgspec.structs.replace(
                MEMO.outbound_policies(self.matched, service, self.labels(service)),
                locality_aware=plan.aware,
                failover_threshold=plan.threshold,
                affinity_weights=plan.affinity_weights,
            )
        return self._policies[service]

    def port_policies(self, service: str, section: str) -> OutboundPolicies:
        """`policies` for a MeshService port named `section` (`to[]` refs with that
        `sectionName` apply too, issue 17)."""
        plan = self.plan(service, section)
        ported = MEMO.outbound_policies(self.matched, service, self.labels(service), section)
        return msgspec.structs.replace(
            ported,
            locality_aware=plan.aware,
            failover_threshold=plan.threshold,
            affinity_weights=plan.affinity_weights,
        )

    def subset(
        self,
        entry: ServiceEntry,
        subset: Mapping[str, str],
        pinned: str | None,
        section: str | None = None,
        owner: str | None = None,
    ) -> list[Endpoint]:
        """`entry`'s endpoints in the `pinned` zone (all when None) whose instances carry
        the `subset` tags: local ones only when there are tags (the ingress routes by
        service and mesh, it cannot pick instances by tag)."""
        plan = self.plan(owner or entry.service, section)
        endpoints: list[Endpoint] = []
        if pinned in (None, self.zone):
            chosen = [i for i in entry.local if tags_match(subset, i.tags)]
            endpoints += _local(chosen, self.zone, plan)
        if self.mtls and not subset:
            remote = _remote(entry, self.zone, plan if pinned is None else None)
            endpoints += [e for e in remote if pinned in (None, e.zone)]
        return endpoints

    def split(self, backend: RouteBackend) -> Split:
        """One backendRef's share and the endpoints it resolves to (none when it names no
        known service, or its labels select none or several)."""
        if backend.name is not None and backend.port is not None:
            found = port_split(
                self, self.view.mesh, self.targets, backend.name, backend.port, backend.zone
            )
            service, endpoints = found if found is not None else (backend.name, [])
            return Split(service, backend.weight, tuple(endpoints), backend.zone)
        if backend.name is not None:
            names = [backend.name]
        else:
            names = [
                e.service
                for e in self.catalog.services(self.view.mesh)
                if labels_select(backend.labels, self.labels(e.service))
            ]
        entry = self.catalog.get(self.view.mesh, names[0]) if len(names) == 1 else None
        if entry is None:
            service = names[0] if len(names) == 1 else ""
            return Split(service, backend.weight, (), backend.zone)
        endpoints = self.subset(entry, backend.tags, backend.zone)
        return Split(entry.service, backend.weight, tuple(endpoints), backend.zone)

    def route(
        self, service: str, section: str | None = None
    ) -> tuple[tuple[Split, ...], tuple[str, ...]]:
        """The splits of `service`'s outbounds (of its MeshService port `section`) and the
        routes they come from (none: no MeshTCPRoute routes it)."""
        key = (service, section)
        if key not in self._routes:
            route = tcp_route(self.matched, service, self.labels(service), section)
            self._routes[key] = (
                ((), ())
                if route is None
                else (tuple(self.split(b) for b in route.backends), route.sources)
            )
        return self._routes[key]

    def http_route(
        self, service: str, section: str | None = None
    ) -> tuple[tuple[HttpRule, ...], tuple[str, ...]]:
        """The MeshHTTPRoute rules of `service`'s http outbounds (of its MeshService port
        `section`) and their routes (none: no MeshHTTPRoute routes it); they win over a
        MeshTCPRoute (decision 125)."""
        key = (service, section)
        if key not in self._http_routes:
            route = http_route(self.matched, service, self.labels(service), section)
            self._http_routes[key] = (
                ((), ()) if route is None else (config_rules(route, self.split), route.sources)
            )
        return self._http_routes[key]

    def routing(
        self, service: str, protocol: Protocol, section: str | None = None
    ) -> dict[str, Any]:
        """The route fields of an outbound that may be routed (not pinned to a zone); of a
        MeshService port named `section` (decision 166)."""
        rules, sources = self.http_route(service, section) if protocol == "http" else ((), ())
        if rules:
            return {"http_rules": rules, "route": sources}
        splits, route = self.route(service, section)
        return {"splits": splits, "route": route}

    def endpoints(self, entry: ServiceEntry, zone: str | None = None) -> tuple[Endpoint, ...]:
        plan = self.plan(entry.service)
        found = _local(entry.local, self.zone, plan) if zone in (None, self.zone) else []
        if self.mtls:
            remote = _remote(entry, self.zone, plan if zone is None else None)
            found += [e for e in remote if zone in (None, e.zone)]
        return tuple(found)

    def vip_outbounds(
        self, vips: Mapping[VipKey, str], reachable: Collection[str] | None, port_80: bool
    ) -> list[Outbound]:
        out: list[Outbound] = []
        for entry in self.catalog.services(self.view.mesh):
            if reachable is not None and entry.service not in reachable:
                continue
            port = entry.port or HTTP_PORT
            for zone in (None, *entry.zones(self.zone)):
                vip = vips.get(VipKey(entry.mesh, entry.service, zone))
                if vip is None:
                    continue
                protocol = as_protocol(entry.protocol)
                routing = self.routing(entry.service, protocol) if zone is None else {}
                out.append(
                    Outbound(
                        service=entry.service,
                        address=vip,
                        port=port,
                        endpoints=self.endpoints(entry, zone),
                        policies=self.policies(entry.service),
                        also_port_80=port_80 and port != HTTP_PORT,
                        zone=zone,
                        protocol=protocol,
                        **routing,
                        access_logs=self.access_logs(entry.service),
                    )
                )
        return out

    def explicit_outbound(self, raw: Any, where: str) -> Outbound:
        tags, port = dig(raw, "tags"), dig(raw, "port")
        service = tags.get(SERVICE_TAG) if isinstance(tags, dict) else None
        if not isinstance(service, str) or not isinstance(port, int):
            raise BuildError(f"{where}: needs a port and a {SERVICE_TAG} tag")
        address = dig(raw, "address")
        subset = {str(k): str(v) for k, v in tags.items() if k != SERVICE_TAG}
        pinned = subset.pop(LABEL_ZONE, None)
        entry = self.catalog.get(self.view.mesh, service)
        endpoints = [] if entry is None else self.subset(entry, subset, pinned)
        protocol = "tcp" if entry is None else as_protocol(entry.protocol)
        routing = self.routing(service, protocol) if pinned is None and not subset else {}
        return Outbound(
            service=service,
            address=address if isinstance(address, str) else DEFAULT_SERVICE_ADDRESS,
            port=port,
            endpoints=tuple(endpoints),
            policies=self.policies(service),
            zone=pinned,
            kind=OutboundKind.EXPLICIT,
            protocol=protocol,
            **routing,
            access_logs=self.access_logs(service),
        )

    def access_logs(self, service: str, section: str | None = None) -> tuple[AccessLog, ...]:
        matched = self.matched.get(MESH_ACCESS_LOG, ())
        if not matched:
            return ()
        return outbound_access_logs(matched, service, self.labels(service), section)


def _inbounds(dataplane: Resource, b: _Builder) -> list[Inbound]:
    raw_inbounds = as_list(dig(dataplane.spec, "networking", "inbound"))
    default_address = dig(dataplane.spec, "networking", "address")
    matched_mtp = b.matched.get(MESH_TRAFFIC_PERMISSION, ())
    matched_mt = b.matched.get(MESH_TIMEOUT, ())
    out: list[Inbound] = []
    for view in b.view.inbounds:
        raw = raw_inbounds[view.index]
        address = raw.get("address") or default_address
        service_address = raw.get("serviceAddress")
        service_port = raw.get("servicePort")
        tags = raw.get("tags")
        out.append(
            Inbound(
                name=view.name,
                address=str(address),
                port=view.port,
                service_address=(
                    service_address if isinstance(service_address, str) else DEFAULT_SERVICE_ADDRESS
                ),
                service_port=service_port if isinstance(service_port, int) else view.port,
                service=view.service,
                tags={str(k): str(v) for k, v in tags.items()},
                permissions=compile_permissions(
                    matched_mtp, view.index, b.view.mesh, mtls_enabled=b.mtls
                ),
                protocol=protocol_of(tags),
                timeouts=inbound_timeouts(matched_mt, view.index),
                faults=compile_faults(
                    b.matched.get(MESH_FAULT_INJECTION, ()), view.index, b.view.mesh
                ),
                rate_limit=compile_rate_limit(b.matched.get(MESH_RATE_LIMIT, ()), view.index),
                access_logs=inbound_access_logs(b.matched.get(MESH_ACCESS_LOG, ()), view.index),
            )
        )
    return out


def _check_listeners(outbounds: Sequence[Outbound]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for o in outbounds:
        where = (o.address, o.port)
        if where in seen:
            raise BuildError(
                f"outbounds {seen[where]} and {o.service} both listen on {o.address}:{o.port}"
            )
        seen[where] = o.service


def _match(
    policies: Mapping[str, Sequence[Resource]], t: str, view: DataplaneView
) -> list[Matched]:
    """`match` of the mesh's policies of type `t` (most types have none: no work)."""
    found = policies.get(t)
    return match(found, view) if found else []


def build_sidecar_config(
    dataplane: Resource,
    zone: str,
    mesh: Resource,
    catalog: Catalog,
    vips: Mapping[VipKey, str],
    policies: Mapping[str, Sequence[Resource]],
    cert: Leaf | None,
    *,
    reachable: Collection[str] | None = None,
    port_80: bool = True,
    targets: Sequence[ServiceTarget] = (),
    view: DataplaneView | None = None,
) -> SidecarConfig:
    """The config of one sidecar; see the module docstring for what goes in. `view`:
    `view_of(dataplane, zone)` when the caller keeps it (a connected sidecar's, made once)."""
    if dataplane.type != "Dataplane" or mesh.type != "Mesh":
        raise BuildError(f"expected a Dataplane and a Mesh, got {dataplane.type}, {mesh.type}")
    if dataplane.meta.mesh != mesh.meta.name:
        raise BuildError(
            f"dataplane {dataplane.meta.name!r} is in mesh {dataplane.meta.mesh!r}, "
            f"not {mesh.meta.name!r}"
        )
    if catalog.zone != zone:
        raise BuildError(f"the catalog is zone {catalog.zone!r}'s, not {zone!r}'s")
    if not isinstance(dig(dataplane.spec, "networking", "address"), str):
        raise BuildError(f"dataplane {dataplane.meta.name!r} has no networking.address")
    if view is None:
        view = view_of(dataplane, zone)
    if not view.inbounds:
        raise BuildError(f"dataplane {dataplane.meta.name!r} has no usable inbound")
    mtls = mtls_enabled(mesh)
    try:
        identity = service_id(mesh.meta.name, view.inbounds[0].service)
    except PkiError as exc:
        raise BuildError(
            f"no SPIFFE identity for dataplane {dataplane.meta.name!r}: {exc}"
        ) from None
    matched = {
        t: _match(policies, t, view)
        for t in (*OUTBOUND_TYPES, MESH_TRAFFIC_PERMISSION, MESH_TCP_ROUTE, MESH_HTTP_ROUTE)
    }
    for t in (MESH_FAULT_INJECTION, MESH_RATE_LIMIT):  # inbound only (traffic_rules.py)
        matched[t] = _match(policies, t, view)
    matched.update({t: _match(policies, t, view) for t in (MESH_ACCESS_LOG, MESH_METRIC)})
    matched[MESH_TRACE] = _match(policies, MESH_TRACE, view)
    b = _Builder(view, zone, mtls, catalog, matched, targets)
    mode = mesh_services_mode(mesh)
    # Kuma's meshServices.mode: Exclusive leaves only MeshService destinations; with
    # ReachableBackends a sidecar reaches the MeshServices of the services it announced.
    tagged = [] if mode == "Exclusive" else b.vip_outbounds(vips, reachable, port_80)
    outbounds = sorted(tagged, key=lambda o: (o.service, o.zone or ""))
    wanted = reachable if mode != "ReachableBackends" else (reachable or ())
    outbounds += target_outbounds(b, mesh.meta.name, targets, wanted)
    for i, raw in enumerate(as_list(dig(dataplane.spec, "networking", "outbound"))):
        outbounds.append(b.explicit_outbound(raw, f"networking.outbound[{i}]"))
    _check_listeners(outbounds)
    return SidecarConfig(
        mesh=mesh.meta.name,
        zone=zone,
        dataplane=dataplane.meta.name,
        identity=identity,
        mtls_enabled=mtls,
        inbounds=tuple(_inbounds(dataplane, b)),
        outbounds=tuple(outbounds),
        tls=_tls(cert, identity, mesh.meta.name) if mtls else None,
        metrics=metrics(matched[MESH_METRIC], dig(dataplane.spec, "networking", "address")),
        tracing=tracing(matched[MESH_TRACE], view.inbounds[0].service),
    )


def build_ingress_config(
    ingress: Resource, zone: str, catalog: Catalog, meshes: Mapping[str, Resource]
) -> IngressConfig:
    """The routing table of `zone`'s ingress: for every service with local instances in a
    mesh with mTLS, its SNI and those instances' sidecar inbounds. `meshes` maps mesh name
    to Mesh resource; a mesh missing from it is not routed."""
    if ingress.type != "ZoneIngress":
        raise BuildError(f"expected a ZoneIngress, got {ingress.type}")
    if catalog.zone != zone:
        raise BuildError(f"the catalog is zone {catalog.zone!r}'s, not {zone!r}'s")
    services: list[IngressService] = []
    for entry in catalog:
        mesh = meshes.get(entry.mesh)
        if not entry.local or mesh is None or not mtls_enabled(mesh):
            continue
        sni = _sni(entry.service, entry.mesh)
        if sni is not None:
            services.append(
                IngressService(entry.mesh, entry.service, sni, tuple(_local(entry.local, zone)))
            )
    return IngressConfig(zone=zone, ingress=ingress.meta.name, services=tuple(services))
