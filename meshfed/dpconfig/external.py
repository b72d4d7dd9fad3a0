"""MeshExternalService names in a zone: the VIP key of each, and its hostnames.

A MeshExternalService takes a VIP from the zone's range like a service, under the key
`VipKey(mesh, <name>, EXTERNAL_LABEL)`: the label sits where a zone name sits in a service's
zone-pinned key, so the zone DNS answers it as `<name>.extsvc.mesh` (mesh `default`;
`<name>.extsvc.<mesh>.meshes.mesh` for another mesh) with no change to how names are made
(zone_cp/dns_wiring.py). The zone name `extsvc` is therefore reserved.

Kuma's default hostname is `{{ .DisplayName }}.extsvc.mesh.local`
(https://kuma.io/docs/latest/networking/hostnamegenerator/); `kuma_hostname` gives it, for
the HostnameGenerator work to answer once the zone DNS serves the `mesh.local` domain.
"""

from __future__ import annotations

from typing import Final

from meshfed.dpconfig.catalog import VipKey

EXTERNAL_LABEL: Final = "extsvc"
KUMA_TEMPLATE: Final = "{{ .DisplayName }}.extsvc.mesh.local"


def external_vip_key(mesh: str, name: str) -> VipKey:
    return VipKey(mesh, name, EXTERNAL_LABEL)


def is_external(key: VipKey) -> bool:
    return key.zone == EXTERNAL_LABEL


def kuma_hostname(display_name: str) -> str:
    """Kuma's default MeshExternalService hostname: `<display name>.extsvc.mesh.local`. One
    function, so the integrator can route it through HostnameGenerator templates."""
    return KUMA_TEMPLATE.replace("{{ .DisplayName }}", display_name.lower())
