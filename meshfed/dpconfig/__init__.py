"""Dataplane configs: what zone-cp sends mesh-dp and zone-ingress, and how it is built.

- model.py: SidecarConfig / IngressConfig (msgspec Structs: one typed definition, its JSON
  form, versions, encoded once per push);
- catalog.py: the services a zone reaches (local instances, other zones' ingresses), and a
  zone's ZoneIngress `availableServices`;
- build.py: `build_sidecar_config`, `build_ingress_config` (pure);
- policies.py: the enforced policy fields of an outbound;
- traffic.py, traffic_rules.py: an inbound's MeshFaultInjection and MeshRateLimit (the
  config's messages; their merge from the matched policies);
- protocol.py: the DataplaneConfig stream messages (proto/dataplane.proto);
- sni.py: the SNI naming a service and its mesh on cross-zone connections (the configs
  carry it; zone-ingress decodes it).

The names below load their module on first use (PEP 562): a proxy that only needs model.py
does not pay for the builders and what they import (memory: every sidecar process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshfed.dpconfig.build import BuildError, build_ingress_config, build_sidecar_config
    from meshfed.dpconfig.catalog import (
        Catalog,
        ServiceEntry,
        VipKey,
        available_services,
        build_catalog,
    )
    from meshfed.dpconfig.model import (
        ConfigFormatError,
        Endpoint,
        Inbound,
        IngressConfig,
        IngressService,
        Outbound,
        OutboundPolicies,
        SidecarConfig,
        Tls,
    )

_WHERE = {
    "BuildError": "build",
    "build_ingress_config": "build",
    "build_sidecar_config": "build",
    "Catalog": "catalog",
    "ServiceEntry": "catalog",
    "VipKey": "catalog",
    "available_services": "catalog",
    "build_catalog": "catalog",
    "ConfigFormatError": "model",
    "Endpoint": "model",
    "Inbound": "model",
    "IngressConfig": "model",
    "IngressService": "model",
    "Outbound": "model",
    "OutboundPolicies": "model",
    "SidecarConfig": "model",
    "Tls": "model",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
