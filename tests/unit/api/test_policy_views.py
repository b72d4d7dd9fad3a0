"""The GUI's read-only views: `/policies`, a mesh's `policies/_sync`, a Dataplane's `_policies`."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from meshfed.api.policy_views import (
    DATAPLANE_POLICIES_SCHEMA,
    MESH_SYNC_SCHEMA,
    POLICY_TYPES_SCHEMA,
    matched_policies,
)
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import Mode, TypeDescriptor
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.policies import POLICIES
from tests.unit.api.conftest import Api, assert_std_error, mesh, start_api, timeout


def dataplane(name: str, service: str, **labels: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "name": name,
        "mesh": "default",
        "labels": labels,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
        },
    }


def to_service(name: str, service: str) -> dict[str, Any]:
    """A MeshTimeout whose top-level targetRef selects `service`'s dataplanes only."""
    body = timeout(name)
    body["spec"]["targetRef"] = {"kind": "MeshService", "name": service}
    return body


def res(body: dict[str, Any]) -> Resource:
    return resource_from_dict(body, default_registry())


async def test_policies_lists_the_policy_types_with_their_paths(api: Api) -> None:
    status, body = await api.json("GET", "/policies")
    assert status == 200
    jsonschema_rs.validate(POLICY_TYPES_SCHEMA, body)  # what /openapi.json declares
    assert [p["name"] for p in body["policies"]] == [d.name for d in POLICIES]
    by_name = {p["name"]: p for p in body["policies"]}
    assert by_name["MeshTimeout"]["path"] == "meshtimeouts"
    assert by_name["MeshTimeout"]["readOnly"] is False


def test_matched_policies_keeps_those_selecting_an_inbound_least_priority_first() -> None:
    dp = res(dataplane("web-1", "web"))
    policies = [
        res(timeout("everyone")),
        res(to_service("only-web", "web")),
        res(to_service("only-backend", "backend")),
    ]
    got = matched_policies(dp, "zone-1", policies)
    assert [(p["type"], p["name"], p["inbounds"]) for p in got] == [
        ("MeshTimeout", "everyone", [0]),
        ("MeshTimeout", "only-web", [0]),
    ]
    assert got[1]["targetRef"] == {"kind": "MeshService", "name": "web"}


def test_matched_policies_sees_the_zone_of_the_dataplane() -> None:
    dp = res(dataplane("web-1", "web"))
    in_zone_2 = timeout("zone-2-only")
    in_zone_2["spec"]["targetRef"] = {"kind": "MeshSubset", "tags": {"kuma.io/zone": "zone-2"}}
    assert matched_policies(dp, "zone-1", [res(in_zone_2)]) == []
    assert [p["name"] for p in matched_policies(dp, "zone-2", [res(in_zone_2)])] == ["zone-2-only"]


async def test_dataplane_policies_endpoint_answers_the_match_and_404s() -> None:
    api, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        await api.store.create(res(mesh("default")))  # a zone receives it from the global
        assert (await api.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web"))).ok
        # Policies are written at the global; a zone holds them as synced copies.
        await api.store.create(res(timeout("everyone")))
        await api.store.create(res(to_service("only-backend", "backend")))
        status, body = await api.json("GET", "/meshes/default/dataplanes/web-1/_policies")
        assert status == 200, body
        jsonschema_rs.validate(DATAPLANE_POLICIES_SCHEMA, body)
        assert body["zone"] == "zone-1"
        assert [(p["type"], p["name"]) for p in body["items"]] == [("MeshTimeout", "everyone")]
        status, body = await api.json("GET", "/meshes/default/dataplanes/nope/_policies")
        assert status == 404
        assert_std_error(body, 404)
    finally:
        await client.close()
        await api.store.close()


class FakeFederation:
    """What the global's ZoneViews answers, recorded: the route must ask once per policy."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    async def zone_overview(self, zone: Resource) -> dict[str, Any]:
        raise AssertionError("not used")

    async def sync_status(self, desc: TypeDescriptor, res: Resource) -> dict[str, Any]:
        self.asked.append((desc.name, res.mesh, res.name))
        zone = {"zone": "z", "state": "online", "version": None, "inSync": False, "lastError": None}
        return {
            "type": desc.name,
            "mesh": res.mesh,
            "name": res.name,
            "version": "v",
            "zones": [zone],
        }


async def test_mesh_sync_is_the_sync_status_of_every_policy_of_the_mesh() -> None:
    federation = FakeFederation()
    api, client = await start_api(federation=federation)
    try:
        for name in ("default", "other"):
            assert (await api.put(f"/meshes/{name}", mesh(name))).ok
        for name, mesh_name in (("a", "default"), ("b", "default"), ("c", "other")):
            assert (
                await api.put(f"/meshes/{mesh_name}/meshtimeouts/{name}", timeout(name, mesh_name))
            ).ok
        status, body = await api.json("GET", "/meshes/default/policies/_sync")
        assert status == 200, body
        jsonschema_rs.validate(MESH_SYNC_SCHEMA, body)
        assert body["mesh"] == "default" and body["total"] == 2
        assert [(i["type"], i["name"]) for i in body["items"]] == [
            ("MeshTimeout", "a"),
            ("MeshTimeout", "b"),
        ]
        assert federation.asked == [
            ("MeshTimeout", "default", "a"),
            ("MeshTimeout", "default", "b"),
        ]
        status, body = await api.json("GET", "/meshes/nope/policies/_sync")
        assert status == 404
        assert_std_error(body, 404)
    finally:
        await client.close()
        await api.store.close()


async def test_mesh_sync_exists_on_the_global_only(api: Api) -> None:
    status, _ = await api.json("GET", "/meshes/default/policies/_sync")
    assert status == 404  # no federation view: a global without KDS, or a zone
    status, doc = await api.json("GET", "/openapi.json")
    assert "/meshes/{mesh}/policies/_sync" not in doc["paths"]
    ops = doc["paths"]["/meshes/{mesh}/dataplanes/{name}/_policies"]["get"]
    assert ops["x-meshfed-access"] == "public"
