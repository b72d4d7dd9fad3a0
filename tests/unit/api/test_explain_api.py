"""`GET /meshes/{mesh}/_explain`: the adapter reads the store and answers as /openapi.json says;
a zone-cp explains its own zone only. The hops themselves: tests/unit/dpconfig/test_explain.py."""

from __future__ import annotations

import time
from typing import Any

import jsonschema_rs

from meshfed.api.explain import EXPLAIN_SCHEMA
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from tests.unit.api.conftest import Api, assert_std_error, start_api

PATH = "/meshes/default/_explain"


def dataplane(name: str, service: str, zone: str, address: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "name": name,
        "mesh": "default",
        "labels": {"kuma.io/zone": zone},
        "networking": {
            "address": address,
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
        },
    }


async def seed(api: Api, *docs: dict[str, Any]) -> None:
    for doc in docs:
        await api.store.create(resource_from_dict(doc, default_registry()))


async def test_explains_from_what_the_store_holds(api: Api) -> None:
    await seed(
        api,
        {"type": "Mesh", "name": "default"},
        dataplane("web-1", "web", "zone-1", "127.0.1.1"),
        dataplane("backend-1", "backend", "zone-1", "127.0.1.2"),
    )

    status, body = await api.json("GET", PATH, params={"from": "web", "to": "backend"})

    assert status == 200
    jsonschema_rs.validate(EXPLAIN_SCHEMA, body)  # what /openapi.json declares
    assert body["zone"] == "zone-1"
    # no sidecar ever connected (no DataplaneInsight), and no VIP was handed out
    assert body["brokenHop"] == "sidecar"
    by_hop = {h["hop"]: h for h in body["hops"]}
    assert by_hop["dns"]["verdict"] == "fail"
    assert by_hop["permission"]["verdict"] == "ok"  # the mesh has no mTLS


async def test_both_services_are_required(api: Api) -> None:
    await seed(api, {"type": "Mesh", "name": "default"})
    status, body = await api.json("GET", PATH, params={"from": "web"})
    assert status == 400
    assert_std_error(body, 400)
    assert "?from=<caller>&to=<service>" in body["detail"]


async def test_an_unknown_mesh_is_404(api: Api) -> None:
    status, body = await api.json("GET", PATH, params={"from": "web", "to": "backend"})
    assert status == 404
    assert_std_error(body, 404)


async def test_a_zone_explains_its_own_zone_only() -> None:
    api, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        await seed(api, {"type": "Mesh", "name": "default"})
        query = {"from": "web", "to": "backend", "zone": "zone-2"}
        status, body = await api.json("GET", PATH, params=query)
        assert status == 400
        assert "ask the global for zone 'zone-2'" in body["detail"]

        status, body = await api.json("GET", PATH, params={"from": "web", "to": "backend"})
        assert status == 200
        assert body["zone"] == "zone-1"
    finally:
        await client.close()
        await api.store.close()


async def test_answers_well_under_a_second_for_a_large_mesh(api: Api) -> None:
    """2,000 dataplanes and 500 policies: the answer comes from the store, one pass each."""
    await seed(api, {"type": "Mesh", "name": "default"})
    for i in range(2000):
        service = "backend" if i % 10 == 0 else f"svc-{i}"
        zone = f"zone-{i % 3}"
        await seed(api, dataplane(f"dp-{i}", service, zone, f"127.1.{i // 250}.{i % 250 + 1}"))
    for i in range(500):
        await seed(
            api,
            {
                "type": "MeshTrafficPermission",
                "name": f"allow-{i}",
                "mesh": "default",
                "spec": {
                    "targetRef": {"kind": "MeshService", "name": f"svc-{i}"},
                    "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
                },
            },
        )
    # CPU time, not wall time: the bound is on the work (one pass each), which a loaded
    # machine does not change; a 1 s wall-clock bound failed at load average 13.
    start = time.process_time()
    status, body = await api.json("GET", PATH, params={"from": "svc-1", "to": "backend"})
    elapsed = time.process_time() - start

    assert status == 200, body
    assert body["zone"] == "zone-1"
    assert elapsed < 1.0, elapsed
    print(f"explain over 2,000 dataplanes, 500 policies: {elapsed * 1000:.0f} ms of CPU")
