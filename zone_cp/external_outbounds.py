"""Traffic that leaves the mesh, in a sidecar's config: MeshPassthrough (`with_passthrough`),
and its outbounds to the MeshExternalServices of its mesh: each listens on the
service's VIP (meshfed/dpconfig/external.py) and `match.port`, and sends over mTLS to the
zone's egresses with the SNI `encode_sni(<name>, <mesh>)`, checking that the egress speaks for
`spiffe://<mesh>/<name>` (as for any service; the egress holds that leaf).

MeshTimeout, MeshRetry, MeshCircuitBreaker, MeshHealthCheck and MeshLoadBalancingStrategy
apply as to any service (their `to[]` of kind Mesh, MeshExternalService by name, or
MeshService by the external service's name), since the outbound is built with the same
`outbound_policies`. What they act on is the hop to the egress: a MeshHealthCheck checks
the egress, not the external endpoints.

Only meshes with mTLS get these outbounds, and only sidecars that call every service or
listed the external service among their reachable services. Without a connected egress the
outbound has no endpoint: connections are refused, as for a service with no instance.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import msgspec

from meshfed.dpconfig.catalog import VipKey
from meshfed.dpconfig.external import external_vip_key
from meshfed.dpconfig.model import Endpoint, Outbound, SidecarConfig
from meshfed.dpconfig.passthrough import compile_passthrough
from meshfed.dpconfig.policies import OUTBOUND_TYPES, outbound_policies
from meshfed.dpconfig.sni import SniError, encode_sni
from meshfed.policy.rules import external_destination, match
from meshfed.policy.targetref import DataplaneView, view_of
from meshfed.resources.model import Resource
from meshfed.resources.models.external import MeshExternalServiceSpec
from meshfed.resources.typed import spec_as
from meshfed.resources.types.common import dig

EXTERNAL_TYPE = "MeshExternalService"
PASSTHROUGH_TYPE = "MeshPassthrough"


def egress_endpoints(egresses: Sequence[Resource], zone: str, sni: str) -> tuple[Endpoint, ...]:
    out: list[Endpoint] = []
    for e in sorted(egresses, key=lambda r: r.name):
        address, port = dig(e.spec, "networking", "address"), dig(e.spec, "networking", "port")
        if isinstance(address, str) and isinstance(port, int):
            out.append(Endpoint(address=address, port=port, zone=zone, sni=sni))
    return tuple(out)


def with_external_outbounds(
    config: SidecarConfig,
    dataplane: Resource,
    zone: str,
    policies: Mapping[str, Sequence[Resource]],
    egresses: Sequence[Resource],
    vips: Mapping[VipKey, str],
    reachable: Collection[str] | None,
) -> SidecarConfig:
    """`config` with an outbound per MeshExternalService of its mesh that has a VIP."""
    externals = policies.get(EXTERNAL_TYPE, ())
    if not externals or not config.mtls_enabled:
        return config
    view = view_of(dataplane, zone)
    matched = {t: match(policies.get(t, ()), view) for t in OUTBOUND_TYPES}
    taken = {(o.address, o.port) for o in config.outbounds}
    added: list[Outbound] = []
    for res in sorted(externals, key=lambda r: r.name):
        if reachable is not None and res.name not in reachable:
            continue
        vip = vips.get(external_vip_key(res.mesh, res.name))
        spec = spec_as(res, MeshExternalServiceSpec)
        if vip is None or spec is None or (vip, spec.match.port) in taken:
            continue
        try:
            sni = encode_sni(res.name, res.mesh)
        except SniError:
            continue
        added.append(
            Outbound(
                service=res.name,
                address=vip,
                port=spec.match.port,
                endpoints=egress_endpoints(egresses, zone, sni),
                policies=outbound_policies(matched, external_destination(res.name)),
                protocol=spec.match.protocol,
            )
        )
    if not added:
        return config
    return msgspec.structs.replace(config, outbounds=(*config.outbounds, *added))


def with_passthrough(
    config: SidecarConfig,
    dataplane: Resource,
    zone: str,
    mesh: Resource,
    policies: Mapping[str, Sequence[Resource]],
    view: DataplaneView | None = None,
) -> SidecarConfig:
    """`config` with what its passthrough proxy admits: the MeshPassthroughs selecting the
    Dataplane, else the Mesh's `networking.outbound.passthrough` (decision 158). `view`:
    `view_of(dataplane, zone)` if the caller keeps it."""
    found = policies.get(PASSTHROUGH_TYPE)
    matched = match(found, view or view_of(dataplane, zone)) if found else []
    return msgspec.structs.replace(config, passthrough=compile_passthrough(matched, mesh))
