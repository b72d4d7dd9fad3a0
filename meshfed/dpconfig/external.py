"""MeshExternalService names in a zone: the VIP key of each, and its hostnames.

A MeshExternalService takes a VIP from the zone's range like a service, under the key
`VipKey(mesh, <name>, EXTERNAL_LABEL)`: the label sits where a zone name sits in a service's
zone-pinned key, so the zone DNS answers it as `<name>.extsvc.mesh` (mesh `default`;
`<name>.extsvc.<mesh>.meshes.mesh` for another mesh) with no change to how names are made
(zone_cp/dns_wiring.py). The zone name `extsvc` is therefore reserved.

Kuma's hostname `{{ .DisplayName }}.extsvc.mesh.local` comes from a HostnameGenerator
(https://kuma.io/docs/latest/networking/hostnamegenerator/; the default one is created with
the default Mesh) and is answered by the zone DNS under `mesh.local` (zone_cp/hostnames.py).
"""

from __future__ import annotations

from typing import Final

from meshfed.dpconfig.catalog import VipKey

EXTERNAL_LABEL: Final = "extsvc"


def external_vip_key(mesh: str, name: str) -> VipKey:
    return VipKey(mesh, name, EXTERNAL_LABEL)


def is_external(key: VipKey) -> bool:
    return key.zone == EXTERNAL_LABEL
