"""The MeshServices a zone generates from its Dataplanes, and the status it writes on its own
MeshServices (issue 17). Pure: resources in, resources to write out (zone_cp.services does
the I/O, as the leader).

Generation follows Kuma's Universal generator (kuma.io/docs/latest/networking/meshservice/,
"Universal"): in a mesh whose `meshServices.mode` is `Everywhere`, `ReachableBackends` or
`Exclusive` (not `Disabled`, Kuma's default), one MeshService per `kuma.io/service` of the
zone's Dataplane inbounds, named after it, selecting `dataplaneTags: {kuma.io/service: ...}`,
with one port per inbound (`name`: the inbound's name or its port; `port` and `targetPort`:
the inbound's port; `appProtocol`: its `kuma.io/protocol`, tcp by default). The Dataplanes
must agree on those ports; one that does not is left out (the first in name order wins). A
service whose name is not a DNS-1035 label gets none (as Kuma). A generated MeshService
goes away with the last Dataplane of its service (Kuma waits a grace period: here its VIP
stays reserved, decision 25, so it comes back with the same address).

A MeshService a user created (no `kuma.io/managed-by: meshservice-generator` label) is
never changed by the generator, and keeps its name from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from meshfed.resources.model import (
    LABEL_DISPLAY_NAME,
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Meta,
    Resource,
)
from meshfed.resources.types.common import PROTOCOL_TAG, SERVICE_TAG, as_list, dig
from meshfed.resources.types.services import MESH_SERVICE
from zone_cp.hostnames import Hostnames

MANAGED_BY: Final = "kuma.io/managed-by"
GENERATOR: Final = "meshservice-generator"
LABEL_MESH: Final = "kuma.io/mesh"
LABEL_ENV: Final = "kuma.io/env"
GENERATING_MODES: Final = frozenset({"Everywhere", "ReachableBackends", "Exclusive"})
_DNS1035: Final = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def mode_of(mesh: Resource) -> str:
    mode = dig(mesh.spec, "meshServices", "mode")
    return mode if isinstance(mode, str) else "Disabled"


def is_local(res: Resource) -> bool:
    """This zone's own MeshService (not a copy of another zone's relayed by the global)."""
    return res.meta.labels.get(LABEL_ORIGIN) != ORIGIN_GLOBAL


def _ports_of(dataplane: Resource) -> dict[str, list[dict[str, Any]]]:
    """service -> its ports on this Dataplane, in inbound order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for inbound in as_list(dig(dataplane.spec, "networking", "inbound")):
        tags = dig(inbound, "tags")
        port = dig(inbound, "port")
        if not isinstance(tags, dict) or not isinstance(port, int):
            continue
        service = tags.get(SERVICE_TAG)
        if not isinstance(service, str) or not _DNS1035.fullmatch(service):
            continue
        name = dig(inbound, "name")
        out.setdefault(service, []).append(
            {
                "name": name if isinstance(name, str) and name else str(port),
                "port": port,
                "targetPort": port,
                "appProtocol": str(tags.get(PROTOCOL_TAG, "tcp")),
            }
        )
    return out


def desired_specs(dataplanes: Iterable[Resource]) -> dict[str, dict[str, Any]]:
    """service -> the `spec` of its generated MeshService, from one mesh's Dataplanes."""
    specs: dict[str, dict[str, Any]] = {}
    for dp in sorted(dataplanes, key=lambda r: r.name):
        for service, ports in _ports_of(dp).items():
            spec = {"selector": {"dataplaneTags": {SERVICE_TAG: service}}, "ports": ports}
            specs.setdefault(service, spec)  # a Dataplane disagreeing on the ports is left out
    return specs


def generated_labels(zone: str, mesh: str, name: str) -> dict[str, str]:
    return {
        LABEL_MESH: mesh,
        LABEL_DISPLAY_NAME: name,
        MANAGED_BY: GENERATOR,
        LABEL_ENV: "universal",
        LABEL_ZONE: zone,
        LABEL_ORIGIN: ORIGIN_ZONE,
    }


def generation_writes(
    zone: str,
    meshes: Iterable[Resource],
    dataplanes: Iterable[Resource],
    stored: Iterable[Resource],
) -> tuple[list[Resource], list[Resource]]:
    """(MeshServices to create or update, generated MeshServices to delete): what makes the
    store hold exactly the generated MeshServices the meshes' modes and Dataplanes call for.
    An update keeps the stored version (a conditional write) and status."""
    generating = {m.name for m in meshes if mode_of(m) in GENERATING_MODES}
    by_mesh: dict[str, list[Resource]] = {}
    for dp in dataplanes:
        if dp.mesh in generating:
            by_mesh.setdefault(dp.mesh, []).append(dp)
    desired = {
        (mesh, name): spec
        for mesh in generating
        for name, spec in desired_specs(by_mesh.get(mesh, ())).items()
    }
    existing = {(r.mesh, r.name): r for r in stored if is_local(r)}
    writes: list[Resource] = []
    deletes: list[Resource] = []
    for key, old in existing.items():
        if old.meta.labels.get(MANAGED_BY) == GENERATOR and key not in desired:
            deletes.append(old)
    for (mesh, name), spec in sorted(desired.items()):
        labels = generated_labels(zone, mesh, name)
        res = existing.get((mesh, name))
        if res is None:
            meta = Meta(name=name, mesh=mesh, labels=labels)
            writes.append(Resource(MESH_SERVICE.name, meta, {"spec": spec}))
        elif res.meta.labels.get(MANAGED_BY) != GENERATOR:
            continue  # the user's own MeshService of that name
        elif res.spec.get("spec") != spec or {**res.meta.labels, **labels} != res.meta.labels:
            meta = Meta(
                name=name,
                mesh=mesh,
                labels={**res.meta.labels, **labels},
                version=res.meta.version,
            )
            writes.append(Resource(MESH_SERVICE.name, meta, {**res.spec, "spec": spec}))
    return writes, deletes


def status_of(res: Resource, vip: str | None, names: Hostnames, mtls: bool) -> dict[str, Any]:
    """The `status` this zone writes on its own MeshService `res`."""
    tid = (MESH_SERVICE.name, res.mesh, res.name)
    status: dict[str, Any] = {
        "addresses": [
            {
                "hostname": c.hostname,
                "origin": "HostnameGenerator",
                "hostnameGeneratorRef": {"coreName": c.generator},
            }
            for c in names.addresses.get(tid, ())
        ],
        "vips": [] if vip is None else [{"ip": vip}],
        "tls": {"status": "Ready" if mtls else "NotReady"},
    }
    generators: dict[str, list[dict[str, Any]]] = {}
    for c in names.addresses.get(tid, ()):
        generators.setdefault(c.generator, []).append(
            {"type": "Generated", "status": "True", "reason": "Generated"}
        )
    for r in names.refusals.get(tid, ()):
        generators.setdefault(r.generator, []).append(
            {"type": "Generated", "status": "False", "reason": r.reason, "message": r.message}
        )
    if generators:
        status["hostnameGenerators"] = [
            {"hostnameGeneratorRef": {"coreName": g}, "conditions": conds}
            for g, conds in sorted(generators.items())
        ]
    return status


def status_writes(
    services: Iterable[Resource],
    vips: Mapping[str, str | None],
    names: Hostnames,
    mtls_meshes: frozenset[str],
) -> list[Resource]:
    """This zone's MeshServices whose status differs from what it should be, as they should
    be (same version: a conditional write). `vips`: name-in-mesh key "mesh/name" -> VIP."""
    out: list[Resource] = []
    for res in services:
        if not is_local(res):
            continue
        status = status_of(res, vips.get(f"{res.mesh}/{res.name}"), names, res.mesh in mtls_meshes)
        if res.spec.get("status") == status:
            continue
        meta = Meta(
            name=res.name,
            mesh=res.mesh,
            labels=dict(res.meta.labels),
            version=res.meta.version,
        )
        out.append(Resource(res.type, meta, {**res.spec, "status": status}))
    return out
