"""Dataplane configs: what zone-cp sends mesh-dp and zone-ingress, and how it is built.

- model.py: SidecarConfig / IngressConfig (frozen dataclasses, JSON form, versions);
- catalog.py: the services a zone reaches (local instances, other zones' ingresses), and a
  zone's ZoneIngress `availableServices`;
- build.py: `build_sidecar_config`, `build_ingress_config` (pure);
- policies.py: the enforced policy fields of an outbound;
- protocol.py: the DataplaneConfig stream messages (proto/dataplane.proto).
"""

from meshfed.dpconfig.build import BuildError, build_ingress_config, build_sidecar_config
from meshfed.dpconfig.catalog import (
    Catalog,
    ServiceEntry,
    VipKey,
    available_services,
    build_catalog,
)
from meshfed.dpconfig.jsonread import ConfigFormatError
from meshfed.dpconfig.model import (
    Endpoint,
    Inbound,
    IngressConfig,
    IngressService,
    Outbound,
    OutboundPolicies,
    SidecarConfig,
    Tls,
)

__all__ = [
    "BuildError",
    "Catalog",
    "ConfigFormatError",
    "Endpoint",
    "Inbound",
    "IngressConfig",
    "IngressService",
    "Outbound",
    "OutboundPolicies",
    "ServiceEntry",
    "SidecarConfig",
    "Tls",
    "VipKey",
    "available_services",
    "build_catalog",
    "build_ingress_config",
    "build_sidecar_config",
]
