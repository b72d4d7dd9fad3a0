"""ZoneIngress: a zone's entry point for cross-zone traffic, advertising its services."""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError
from meshfed.resources.schema import Bool, Int, ListOf, Obj, Str, as_validator, join
from meshfed.resources.types.common import (
    ADDRESS,
    AGE_COLUMN,
    DIALABLE_ADDRESS,
    NAME,
    NAME_COLUMN,
    PORT,
    SERVICE_TAGS,
    advertised_pair,
    as_list,
    column,
    dig,
)


def _dialed_address(obj: dict[str, Any], path: str) -> list[FieldError]:
    """Other zones dial `advertisedAddress` if set, else `address`: that one must be dialable
    (issue 16: `address: 0.0.0.0` was accepted and advertised). `address` alone may be
    0.0.0.0 when an advertised address says where to reach the ingress."""
    if obj.get("advertisedAddress") is not None:
        return []
    return DIALABLE_ADDRESS.check(obj.get("address"), join(path, "address"))


# Other zones reach the ingress on its advertised address when it is behind NAT or a LB.
ZONE_INGRESS_SCHEMA = Obj(
    {
        "zone": Str(),
        "networking": Obj(
            {
                "address": ADDRESS,
                "port": PORT,
                "advertisedAddress": DIALABLE_ADDRESS,
                "advertisedPort": PORT,
                "admin": Obj({"port": PORT}),
            },
            required=("address", "port"),
            checks=(advertised_pair("advertisedAddress", "advertisedPort"), _dialed_address),
        ),
        "availableServices": ListOf(
            Obj(
                {
                    "tags": SERVICE_TAGS,
                    "instances": Int(0, 2**32 - 1),
                    "mesh": NAME,
                    "externalService": Bool(),
                },
                required=("tags",),
            )
        ),
    },
    required=("networking",),
)


def public_address(spec: dict[str, Any]) -> str:
    """Where other zones dial this ingress: the advertised address if any, as host:port."""
    net = dig(spec, "networking")
    host = dig(net, "advertisedAddress") or dig(net, "address")
    port = dig(net, "advertisedPort") if dig(net, "advertisedAddress") else dig(net, "port")
    if not isinstance(host, str):
        return "-"
    return f"{host}:{port}" if isinstance(port, int) else host


ZONE_INGRESS = TypeDescriptor(
    name="ZoneIngress",
    plural="zoneingresses",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL, KdsFlag.SYNCED_ACROSS_ZONES}),
    short_names=("zi", "zoneingress"),
    validate=as_validator(ZONE_INGRESS_SCHEMA),
    columns=(
        NAME_COLUMN,
        column("ZONE", lambda r: str(r.spec.get("zone") or "-")),
        column("ADDRESS", lambda r: public_address(r.spec)),
        column("SERVICES", lambda r: str(len(as_list(r.spec.get("availableServices"))))),
        AGE_COLUMN,
    ),
    description="A zone ingress and the services it makes reachable from other zones.",
)
