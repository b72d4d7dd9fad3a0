"""Valid resources for policy and config tests, built through the real codec and validators."""

from __future__ import annotations

from functools import cache
from typing import Any

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.policies import schema_only

MESH = "default"


@cache
def schema_registry() -> Registry:
    """The registry without the policies' enforcement gate: Kuma's shape only."""
    return Registry(schema_only(d) for d in default_registry())


def resource(doc: dict[str, Any], *, enforced: bool = True) -> Resource:
    """Parses and validates `doc`: a test can never feed the code a resource the API refuses.
    `enforced=False` skips only the enforcement gate (for tests of the gate and of code that
    must ignore fields it does not enforce)."""
    return resource_from_dict(doc, default_registry() if enforced else schema_registry())


def inbound(service: str, port: int, **extra: Any) -> dict[str, Any]:
    """An inbound of `service`; `tags=` adds tags, other keywords are inbound fields."""
    tags = {"kuma.io/service": service, **extra.pop("tags", {})}
    return {"port": port, "tags": tags, **extra}


def dataplane(
    name: str,
    *inbounds: dict[str, Any],
    address: str = "127.0.0.2",
    mesh: str = MESH,
    labels: dict[str, str] | None = None,
    outbounds: list[dict[str, Any]] | None = None,
) -> Resource:
    networking: dict[str, Any] = {"address": address, "inbound": list(inbounds)}
    if outbounds:
        networking["outbound"] = outbounds
    doc: dict[str, Any] = {"type": "Dataplane", "mesh": mesh, "name": name}
    if labels:
        doc["labels"] = labels
    doc["networking"] = networking
    return resource(doc)


def policy(
    type_: str,
    name: str,
    target: dict[str, Any] | None = None,
    mesh: str = MESH,
    labels: dict[str, str] | None = None,
    *,
    enforced: bool = True,
    **sections: Any,
) -> Resource:
    """A Mesh* policy; `from_=` stands for `from`; `enforced=False`: see `resource`."""
    spec: dict[str, Any] = {}
    if target is not None:
        spec["targetRef"] = target
    for key, value in sections.items():
        spec[key.rstrip("_")] = value
    doc: dict[str, Any] = {"type": type_, "mesh": mesh, "name": name, "spec": spec}
    if labels:
        doc["labels"] = labels
    return resource(doc, enforced=enforced)


def mtp(
    name: str, target: dict[str, Any] | None = None, *, enforced: bool = True, **sections: Any
) -> Resource:
    return policy("MeshTrafficPermission", name, target, enforced=enforced, **sections)


def frm(ref: dict[str, Any], action: str) -> dict[str, Any]:
    """One MeshTrafficPermission `from[]` entry."""
    return {"targetRef": ref, "default": {"action": action}}


def to(ref: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    return {"targetRef": ref, "default": default}


MESH_REF: dict[str, Any] = {"kind": "Mesh"}


def svc(name: str) -> dict[str, Any]:
    return {"kind": "MeshService", "name": name}


def subset(tags: dict[str, str]) -> dict[str, Any]:
    return {"kind": "MeshSubset", "tags": tags}


def mesh_resource(name: str = MESH, mtls: bool = True) -> Resource:
    doc: dict[str, Any] = {"type": "Mesh", "name": name}
    if mtls:
        doc["mtls"] = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
    return resource(doc)


def zone_ingress(
    name: str,
    zone: str,
    address: str,
    port: int,
    services: list[dict[str, Any]],
    *,
    advertised: tuple[str, int] | None = None,
) -> Resource:
    networking: dict[str, Any] = {"address": address, "port": port}
    if advertised:
        networking["advertisedAddress"], networking["advertisedPort"] = advertised
    return resource(
        {
            "type": "ZoneIngress",
            "name": name,
            "zone": zone,
            "networking": networking,
            "availableServices": services,
        }
    )
