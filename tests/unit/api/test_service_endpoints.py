"""The non-resource endpoints: server info, type list, OpenAPI, metrics, readiness, 500s."""

from __future__ import annotations

from typing import Any

from meshfed import __version__
from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.api.routes import ROUTES
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from meshfed.store.base import ListPage
from meshfed.store.memory import MemoryStore
from tests.unit.api.conftest import Api, assert_std_error, mesh, start_api, timeout


async def test_index(api: Api) -> None:
    status, body = await api.json("GET", "/")
    assert status == 200
    assert body == {
        "product": "meshfed",
        "version": __version__,
        "instanceId": api.ctx.instance_id,
        "mode": "global",
        "hostname": api.ctx.hostname,
    }
    assert body["instanceId"]


async def test_resources_lists_every_descriptor(api: Api) -> None:
    status, body = await api.json("GET", "/_resources")
    assert status == 200
    assert body["resources"] == [d.to_json() for d in default_registry()]
    paths = {r["name"]: r["path"] for r in body["resources"]}
    assert paths["MeshTrafficPermission"] == "meshtrafficpermissions"


async def test_openapi_describes_every_registered_route(api: Api) -> None:
    status, doc = await api.json("GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    app_routes = list(api.client.app.router.routes())
    assert len(app_routes) > 50
    for route in app_routes:
        assert route.resource is not None
        path = route.resource.canonical
        assert route.method.lower() in doc["paths"].get(path, {}), (route.method, path)
    mt = doc["paths"]["/meshes/{mesh}/meshtimeouts/{name}"]["put"]
    assert [p["name"] for p in mt["parameters"] if p["in"] == "path"] == ["mesh", "name"]
    assert mt["requestBody"]["content"]["application/yaml"]["schema"] == {
        "$ref": "#/components/schemas/MeshTimeout"
    }
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == len(app_routes)
    assert mt["operationId"] == "putMeshTimeout"
    # Every $ref resolves.
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_routes_table_matches_router(api: Api) -> None:
    table = api.client.app[ROUTES]
    documented = {(op.method, op.path) for op in table.operations}
    routed = {(r.method, r.resource.canonical) for r in api.client.app.router.routes()}
    assert documented == routed


async def test_metrics(api: Api) -> None:
    await api.put("/meshes/default", mesh("default"))
    await api.put("/meshes/default/meshtimeouts/t1", timeout("t1"))
    await api.client.get("/meshes/default/meshtimeouts/nope")
    await api.client.get("/definitely/not/here")
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert (
        'meshfed_api_requests_total{method="PUT",route="/meshes/{mesh}/meshtimeouts/{name}",'
        'status="201"} 1.0' in text
    )
    assert (
        'meshfed_api_requests_total{method="GET",route="/meshes/{mesh}/meshtimeouts/{name}",'
        'status="404"} 1.0' in text
    )
    assert 'route="unmatched",status="404"' in text
    assert "meshfed_api_request_duration_seconds_bucket" in text
    assert 'meshfed_resources{type="MeshTimeout"} 1.0' in text
    assert 'meshfed_resources{type="Mesh"} 1.0' in text
    assert 'meshfed_resources{type="Dataplane"} 0.0' in text


async def test_ready_follows_the_context_and_the_store(api: Api) -> None:
    status, _ = await api.json("GET", "/ready")
    assert status == 200
    api.ctx.ready = False
    status, body = await api.json("GET", "/ready")
    assert status == 503
    assert_std_error(body, 503)


class _BrokenStore(MemoryStore):
    """Fault injection: a store whose list and revision fail, as a lost database would."""

    async def list(self, *args: Any, **kwargs: Any) -> ListPage:
        raise RuntimeError("disk on fire")

    async def revision(self) -> int:
        raise RuntimeError("disk on fire")


async def test_unexpected_errors_are_500_without_traceback() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    ctx = ApiContext(_BrokenStore(), default_registry(), Mode.GLOBAL, ready=True)
    async with TestClient(TestServer(build_app(ctx), host="127.0.0.1")) as client:
        resp = await client.get("/meshes")
        body = await resp.json()
        assert resp.status == 500
        assert_std_error(body, 500)
        assert "disk on fire" not in body["detail"] and "Traceback" not in body["detail"]
        resp = await client.get("/ready")
        assert resp.status == 503
        assert "disk on fire" in (await resp.json())["detail"]


async def test_zone_mode_index() -> None:
    zone_api, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        status, body = await zone_api.json("GET", "/")
        assert (status, body["mode"]) == (200, "zone")
    finally:
        await client.close()
