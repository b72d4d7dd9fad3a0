"""`GET /meshes/{mesh}/dataplanes/{name}/_rules` on a zone's API: the merged confs from what the
store holds, 404 for an unknown dataplane, readable as `_policies` is (decision 138)."""

from __future__ import annotations

import jsonschema_rs

from meshfed.api.rules import DATAPLANE_RULES_SCHEMA
from meshfed.resources.descriptors import Mode
from tests.unit.api.conftest import Api, assert_std_error, mesh, start_api, timeout
from tests.unit.api.test_policy_views import dataplane, res, to_service


async def test_rules_endpoint_answers_the_merged_confs_and_404s() -> None:
    api, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        await api.store.create(res(mesh("default")))
        assert (await api.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web"))).ok
        assert (await api.put("/meshes/default/dataplanes/be-1", dataplane("be-1", "backend"))).ok
        await api.store.create(res(timeout("everyone")))
        await api.store.create(res(to_service("only-backend", "backend")))  # selects be-1 only
        status, body = await api.json("GET", "/meshes/default/dataplanes/web-1/_rules")
        assert status == 200, body
        jsonschema_rs.validate(DATAPLANE_RULES_SCHEMA, body)
        assert (body["dataplane"], body["zone"]) == ("web-1", "zone-1")
        [rules] = body["rules"]
        assert rules["type"] == "MeshTimeout"
        targets = {r["matchers"][0]["value"]: r for r in rules["toRules"]}
        assert sorted(targets) == ["backend", "web"]
        assert targets["backend"]["conf"] == {"idleTimeout": "20s", "connectionTimeout": "2s"}
        meta = targets["backend"]["origin"][0]["resourceMeta"]
        assert (meta["type"], meta["name"]) == ("MeshTimeout", "everyone")
        status, body = await api.json("GET", "/meshes/default/dataplanes/nope/_rules")
        assert status == 404
        assert_std_error(body, 404)
        status, body = await api.json("GET", "/meshes/other/dataplanes/web-1/_rules")
        assert status == 404  # the dataplane is in another mesh
        assert_std_error(body, 404)
    finally:
        await client.close()
        await api.store.close()


async def test_rules_is_documented_and_public_as_policies_is(api: Api) -> None:
    status, doc = await api.json("GET", "/openapi.json")
    assert status == 200
    for view in ("_rules", "_policies"):
        op = doc["paths"][f"/meshes/{{mesh}}/dataplanes/{{name}}/{view}"]["get"]
        assert op["x-meshfed-access"] == "public"
    ops = doc["paths"]["/meshes/{mesh}/dataplanes/{name}/_rules"]["get"]
    assert set(ops["responses"]) >= {"200", "404"}
