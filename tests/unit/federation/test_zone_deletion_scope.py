"""Deleting a zone removes what that zone sent, never the global's own
resources, and API clients cannot forge the system labels that say where a resource is from."""

from __future__ import annotations

from typing import Any

from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from tests.inprocess_federation import Global

TIMEOUT_SPEC: dict[str, Any] = {
    "targetRef": {"kind": "Mesh"},
    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "20s"}}],
}
DP_SPEC: dict[str, Any] = {
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
    }
}


def timeout(name: str, mesh: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    doc = {"type": "MeshTimeout", "name": name, "mesh": mesh, "spec": TIMEOUT_SPEC}
    return doc | ({"labels": labels} if labels else {})


async def test_global_api_refuses_system_labels_the_global_would_not_set(glob: Global) -> None:
    zone_label = {LABEL_ZONE: "zone-1"}
    status, body = await glob.call(
        "PUT", "/meshes/prod", {"type": "Mesh", "name": "prod", "labels": zone_label}
    )
    assert status == 400, body
    assert [p["field"] for p in body["invalid_parameters"]] == ["labels['kuma.io/zone']"]
    assert (await glob.call("GET", "/meshes/prod"))[0] == 404

    forged = {LABEL_ORIGIN: "zone", LABEL_DISPLAY_NAME: "x", "team": "a"}
    status, body = await glob.call(
        "PUT", "/meshes/default/meshtimeouts/t1", timeout("t1", "default", forged)
    )
    assert status == 400, body
    assert sorted(p["field"] for p in body["invalid_parameters"]) == [
        "labels['kuma.io/display-name']",
        "labels['kuma.io/origin']",
    ]
    # What `meshctl export` writes (origin: global) is still accepted as it is.
    status, body = await glob.call(
        "PUT", "/meshes/default/meshtimeouts/t1", timeout("t1", "default", {LABEL_ORIGIN: "global"})
    )
    assert status == 201, body


async def test_zone_delete_removes_only_what_the_zone_sent(glob: Global) -> None:
    store = glob.store
    # Older writes (before the API refused such labels): global-owned, but labelled zone-1.
    labelled = {LABEL_ORIGIN: "global", LABEL_ZONE: "zone-1"}
    await store.create(Resource("Mesh", Meta("prod", labels=dict(labelled))))
    await store.create(
        Resource("MeshTimeout", Meta("t1", "prod", dict(labelled)), dict(TIMEOUT_SPEC))
    )
    # A Mesh even claiming origin zone: Meshes never come from a zone.
    forged = {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
    await store.create(Resource("Mesh", Meta("forged", labels=forged)))
    # What zone-1 really sent, and what zone-2 sent.
    for zone in ("zone-1", "zone-2"):
        labels = {LABEL_ORIGIN: "zone", LABEL_ZONE: zone, LABEL_DISPLAY_NAME: "dp"}
        await store.create(Resource("Dataplane", Meta(f"dp.{zone}", "prod", labels), DP_SPEC))
    assert (await glob.call("PUT", "/zones/zone-1", {"type": "Zone", "name": "zone-1"}))[0] == 201

    status, body = await glob.call("DELETE", "/zones/zone-1")
    assert status == 200, body

    assert (await glob.call("GET", "/meshes/prod"))[0] == 200
    assert (await glob.call("GET", "/meshes/forged"))[0] == 200
    assert (await glob.call("GET", "/meshes/prod/meshtimeouts/t1"))[0] == 200
    left = [r.name for r in (await store.list("Dataplane")).items]
    assert left == ["dp.zone-2"]
