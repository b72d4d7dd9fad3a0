"""One proxy's config from what the zone holds (pure apart from certificate issuing).

The config server gathers `BuildInputs` once per rebuild pass (meshes, CA secrets and
policies from the zone store, each mesh's CA parsed at most once) and calls `build_config`
for every proxy to rebuild: a sidecar gets meshfed.dpconfig's `build_sidecar_config` with a
leaf from zone_cp.certs when its mesh has mTLS, an ingress `build_ingress_config`. What
cannot be built raises `Unavailable`, BuildError or CertError, each saying why.

A sidecar that announced its reachable services gets outbounds for those only, built from a
catalog narrowed to them (and to its explicit outbounds' services): with 1,000 services in a
mesh and sidecars that each call two, a config costs two entries, not 1,000. The same set
tells the config server which sidecars a catalog change concerns (`changed_services`,
`Wants`), so a change to a service a sidecar does not call does not even rebuild its config.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshfed.dpconfig.build import build_ingress_config, build_sidecar_config
from meshfed.dpconfig.catalog import Catalog, VipKey
from meshfed.dpconfig.http_route import MESH_HTTP_ROUTE
from meshfed.dpconfig.meshservices import ServiceTarget
from meshfed.dpconfig.model import IngressConfig, SidecarConfig
from meshfed.dpconfig.policies import MESH_TCP_ROUTE, with_route_backends
from meshfed.dpconfig.protocol import ProxyType
from meshfed.pki.ca import MeshCA
from meshfed.policy.callers import certified_tags
from meshfed.policy.targetref import DataplaneView, view_of
from meshfed.resources.model import Resource
from meshfed.resources.models.proxies import DataplaneSpec
from meshfed.resources.typed import spec_as
from meshfed.resources.types.common import SERVICE_TAG
from zone_cp.certs import CertError, CertIssuer, mesh_ca

ServiceKey = tuple[str, str]  # (mesh, service)


class Unavailable(Exception):
    """A config cannot be built for now; the message says why."""


@dataclass
class BuildInputs:
    """What every config of one rebuild pass reads, gathered once."""

    meshes: dict[str, Resource]
    secrets: dict[str, dict[str, Resource]]  # mesh -> name -> Secret
    policies: dict[str, dict[str, list[Resource]]]  # mesh -> type -> policies
    _cas: dict[str, MeshCA | CertError | None] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        meshes: Iterable[Resource],
        secrets: Iterable[Resource],
        policies: Iterable[Resource],
    ) -> BuildInputs:
        by_mesh: dict[str, dict[str, Resource]] = {}
        for secret in secrets:
            by_mesh.setdefault(secret.mesh, {})[secret.name] = secret
        grouped: dict[str, dict[str, list[Resource]]] = {}
        for policy in policies:
            grouped.setdefault(policy.mesh, {}).setdefault(policy.type, []).append(policy)
        return cls({m.name: m for m in meshes}, by_mesh, grouped)

    def ca(self, mesh: Resource) -> MeshCA | None:
        """The mesh's CA (None: no builtin mTLS), parsed once per pass; CertError if absent
        or unusable."""
        name = mesh.meta.name
        if name not in self._cas:
            try:
                self._cas[name] = mesh_ca(mesh, self.secrets.get(name, {}))
            except CertError as exc:
                self._cas[name] = exc
        found = self._cas[name]
        if isinstance(found, CertError):
            raise found
        return found


def wanted_services(dataplane: Resource, reachable: frozenset[str] | None) -> frozenset[str] | None:
    """The services whose catalog entries a sidecar's config reads: its reachable services
    and its explicit outbounds' (None: every service of its mesh)."""
    if reachable is None:
        return None
    spec = spec_as(dataplane, DataplaneSpec)
    outbounds = (spec.networking.outbound or ()) if spec is not None else ()
    return reachable | {o.tags[SERVICE_TAG] for o in outbounds}


def narrowed(catalog: Catalog, mesh: str, services: Iterable[str]) -> Catalog:
    """The catalog with only these services of `mesh`."""
    entries = (catalog.get(mesh, s) for s in services)
    return Catalog(catalog.zone, [e for e in entries if e is not None])


@dataclass(frozen=True)
class Wants:
    """Which catalog changes concern one proxy."""

    kind: ProxyType
    mesh: str
    services: frozenset[str] | None  # a sidecar's wanted_services; None: all of its mesh

    @classmethod
    def of(cls, kind: ProxyType, resource: Resource, reachable: frozenset[str] | None) -> Wants:
        if kind is ProxyType.INGRESS:
            return cls(kind, "", None)
        return cls(kind, resource.mesh, wanted_services(resource, reachable))

    def affected_by(self, changed: Collection[ServiceKey]) -> bool:
        if self.kind is ProxyType.INGRESS:
            return bool(changed)  # it routes every mesh's local services
        if self.services is None:
            return any(mesh == self.mesh for mesh, _ in changed)
        return any((self.mesh, s) in changed for s in self.services)


def changed_services(
    old: Catalog,
    old_vips: Mapping[VipKey, str],
    new: Catalog,
    new_vips: Mapping[VipKey, str],
) -> set[ServiceKey]:
    """The (mesh, service) pairs whose catalog entry or VIPs differ between two snapshots."""
    before = {(e.mesh, e.service): e for e in old}
    after = {(e.mesh, e.service): e for e in new}
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    for key in old_vips.keys() | new_vips.keys():
        if old_vips.get(key) != new_vips.get(key):
            changed.add((key.mesh, key.service))
    return changed


def build_config(
    kind: ProxyType,
    resource: Resource,
    zone: str,
    catalog: Catalog,
    vips: Mapping[VipKey, str],
    inputs: BuildInputs,
    issuer: CertIssuer,
    *,
    reachable: frozenset[str] | None = None,
    targets: Sequence[ServiceTarget] = (),
    view: DataplaneView | None = None,
) -> SidecarConfig | IngressConfig:
    """The config of the proxy registered as `resource` (its Dataplane or ZoneIngress);
    `reachable`: the services a sidecar announced it calls (None: every one); `view`: the
    sidecar's `view_of(resource, zone)` if the caller keeps it."""
    if kind is ProxyType.INGRESS:
        return build_ingress_config(resource, zone, catalog, inputs.meshes)
    mesh = inputs.meshes.get(resource.mesh)
    if mesh is None:
        raise Unavailable(f"mesh {resource.mesh!r} no longer exists in zone {zone!r}")
    ca = inputs.ca(mesh)
    leaf = None
    if view is None:
        view = view_of(resource, zone)
    if ca is not None:
        if not view.inbounds:
            raise Unavailable(f"dataplane {resource.name!r} has no usable inbound")
        service = view.inbounds[0].service
        tags = certified_tags(view, service, zone)
        leaf = issuer.leaf_for(mesh, ca, resource.name, service, tags)
    wanted = wanted_services(resource, reachable)
    policies = inputs.policies.get(resource.mesh, {})
    if wanted is not None:  # and the services routes send those calls to
        routes = (*policies.get(MESH_TCP_ROUTE, ()), *policies.get(MESH_HTTP_ROUTE, ()))
        wanted = with_route_backends(wanted, routes)
    if wanted is not None:
        catalog = narrowed(catalog, resource.mesh, wanted)
    return build_sidecar_config(
        resource,
        zone,
        mesh,
        catalog,
        vips,
        policies,
        leaf,
        reachable=reachable,
        targets=targets,
        view=view,
    )
