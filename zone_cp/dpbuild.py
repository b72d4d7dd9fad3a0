"""One proxy's config from what the zone holds (pure apart from certificate issuing).

The config server gathers `BuildInputs` once per rebuild pass (meshes, CA secrets and
policies from the zone store, each mesh's CA parsed at most once) and calls `build_config`
for every proxy to rebuild: a sidecar gets meshfed.dpconfig's `build_sidecar_config` with a
leaf from zone_cp.certs when its mesh has mTLS, an ingress `build_ingress_config`. What
cannot be built raises `Unavailable`, BuildError or CertError, each saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshfed.dpconfig.build import build_ingress_config, build_sidecar_config
from meshfed.dpconfig.catalog import Catalog, VipKey
from meshfed.dpconfig.model import IngressConfig, SidecarConfig
from meshfed.dpconfig.protocol import ProxyType
from meshfed.pki.ca import MeshCA
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from zone_cp.certs import CertError, CertIssuer, mesh_ca


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


def build_config(
    kind: ProxyType,
    resource: Resource,
    zone: str,
    catalog: Catalog,
    vips: Mapping[VipKey, str],
    inputs: BuildInputs,
    issuer: CertIssuer,
) -> SidecarConfig | IngressConfig:
    """The config of the proxy registered as `resource` (its Dataplane or ZoneIngress)."""
    if kind is ProxyType.INGRESS:
        return build_ingress_config(resource, zone, catalog, inputs.meshes)
    mesh = inputs.meshes.get(resource.mesh)
    if mesh is None:
        raise Unavailable(f"mesh {resource.mesh!r} no longer exists in zone {zone!r}")
    ca = inputs.ca(mesh)
    leaf = None
    if ca is not None:
        view = view_of(resource, zone)
        if not view.inbounds:
            raise Unavailable(f"dataplane {resource.name!r} has no usable inbound")
        leaf = issuer.leaf_for(mesh, ca, resource.name, view.inbounds[0].service)
    return build_sidecar_config(
        resource,
        zone,
        mesh,
        catalog,
        vips,
        inputs.policies.get(resource.mesh, {}),
        leaf,
    )
