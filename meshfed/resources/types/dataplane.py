"""Dataplane: a workload's sidecar, in Kuma's Universal shape (networking.inbound/outbound).

meshfed's sidecar listens on VIPs that zone DNS hands out, so there is no iptables-based
transparent proxying; and there are no built-in gateways. Both are refused with a reason
(the model: meshfed/resources/models/proxies.py:DataplaneSpec).
"""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.model import LABEL_ZONE
from meshfed.resources.types.common import (
    AGE_COLUMN,
    MESH_COLUMN,
    NAME_COLUMN,
    SERVICE_TAG,
    as_list,
    column,
    dig,
)


def services(spec: dict[str, Any]) -> list[str]:
    """The kuma.io/service of each inbound, in order, without repeats."""
    out: list[str] = []
    for inbound in as_list(dig(spec, "networking", "inbound")):
        svc = dig(inbound, "tags", SERVICE_TAG)
        if isinstance(svc, str) and svc not in out:
            out.append(svc)
    return out


def _address_cell(spec: dict[str, Any]) -> str:
    addr = dig(spec, "networking", "address")
    return addr if isinstance(addr, str) else "-"


DATAPLANE = TypeDescriptor(
    name="Dataplane",
    plural="dataplanes",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    short_names=("dp",),
    model="meshfed.resources.models.proxies:DataplaneSpec",
    columns=(
        NAME_COLUMN,
        MESH_COLUMN,
        column("ZONE", lambda r: r.meta.labels.get(LABEL_ZONE, "-")),
        column("ADDRESS", lambda r: _address_cell(r.spec)),
        column("SERVICES", lambda r: ",".join(services(r.spec)) or "-"),
        AGE_COLUMN,
    ),
    description="A sidecar and the inbounds it serves; owned by its zone.",
)
