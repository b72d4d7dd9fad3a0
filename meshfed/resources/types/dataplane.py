"""Dataplane: a workload's sidecar, in Kuma's Universal shape (networking.inbound/outbound).

meshfed's sidecar listens on VIPs that zone DNS hands out, so there is no iptables-based
transparent proxying; and there are no built-in gateways. Both are refused with a reason.
"""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError
from meshfed.resources.model import LABEL_ZONE
from meshfed.resources.schema import (
    Bool,
    Duration,
    Int,
    ListOf,
    Obj,
    Str,
    Unsupported,
    as_validator,
    join,
)
from meshfed.resources.types.common import (
    ADDRESS,
    AGE_COLUMN,
    DIALABLE_ADDRESS,
    MESH_COLUMN,
    NAME_COLUMN,
    NOT_SUPPORTED,
    PORT,
    SERVICE_TAG,
    SERVICE_TAGS,
    as_list,
    column,
    dig,
)

_INBOUND = Obj(
    {
        "name": Str(
            pattern=r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            message="must be a DNS label (lower case alphanumerics and '-')",
        ),
        "port": PORT,
        "servicePort": PORT,
        "serviceAddress": ADDRESS,
        "address": DIALABLE_ADDRESS,
        "tags": SERVICE_TAGS,
        "health": Obj({"ready": Bool()}),
        "serviceProbe": Obj(
            {
                "interval": Duration(positive=True),
                "timeout": Duration(positive=True),
                "unhealthyThreshold": Int(1, 2**32 - 1),
                "healthyThreshold": Int(1, 2**32 - 1),
                "tcp": Obj({}),
            }
        ),
    },
    required=("port", "tags"),
)

_OUTBOUND = Obj({"port": PORT, "address": ADDRESS, "tags": SERVICE_TAGS}, required=("port", "tags"))


def _needs_inbound(networking: dict[str, Any], path: str) -> list[FieldError]:
    if networking.get("gateway") is not None:
        return []  # already refused; do not pile a second error on the same mistake
    inbound = networking.get("inbound")
    if not isinstance(inbound, list) or not inbound:
        return [FieldError(join(path, "inbound"), "must have at least 1 item")]
    return []


DATAPLANE_SCHEMA = Obj(
    {
        "networking": Obj(
            {
                "address": DIALABLE_ADDRESS,
                "advertisedAddress": DIALABLE_ADDRESS,
                "inbound": ListOf(_INBOUND),
                "outbound": ListOf(_OUTBOUND),
                "admin": Obj({"port": PORT}),
                "gateway": Unsupported(f"{NOT_SUPPORTED}: there are no built-in gateways"),
                "transparentProxying": Unsupported(
                    f"{NOT_SUPPORTED}: sidecars listen on VIPs from the zone's DNS instead"
                ),
            },
            required=("address",),
            checks=(_needs_inbound,),
        ),
    },
    required=("networking",),
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
    validate=as_validator(DATAPLANE_SCHEMA),
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
