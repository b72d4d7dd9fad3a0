"""The enforcement gate at the API: a policy field meshfed's sidecar would not act on is
refused with a 400 naming it (REST and dry runs alike), the store is left untouched, and the
same policy without that field is accepted."""

from __future__ import annotations

import copy
from typing import Any

from meshfed.policy.enforced import NOT_ENFORCED
from tests.unit.api.conftest import Api, assert_std_error, fields, mesh

MT = "/meshes/default/meshtimeouts"


def timeout_with_http() -> dict[str, Any]:
    return {
        "type": "MeshTimeout",
        "name": "t1",
        "mesh": "default",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "Mesh"},
                    "default": {
                        "idleTimeout": "20s",
                        "http": {"requestTimeout": "2s", "streamIdleTimeout": "1m"},
                    },
                }
            ],
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1m"}}],
        },
    }


async def test_unenforced_fields_get_a_400_naming_each(api: Api) -> None:
    assert (await api.put("/meshes/default", mesh("default"))).status == 201
    before = await api.snapshot()
    for query in ("", "?dryRun=true"):
        status, body = await api.json("PUT", f"{MT}/t1{query}", json=timeout_with_http())
        assert status == 400, body
        assert_std_error(body, 400)
        assert fields(body) == ["spec.from"]  # to[]'s http is enforced (issue 13)
        reasons = [p["reason"] for p in body["invalid_parameters"]]
        assert all(NOT_ENFORCED in r for r in reasons)
        assert "for MeshTimeout" in reasons[0]
    assert await api.snapshot() == before

    enforced = copy.deepcopy(timeout_with_http())
    del enforced["spec"]["from"]
    assert (await api.put(f"{MT}/t1", enforced)).status == 201


async def test_schema_errors_and_unenforced_fields_come_together(api: Api) -> None:
    assert (await api.put("/meshes/default", mesh("default"))).status == 201
    doc = timeout_with_http()
    doc["spec"]["to"][0]["default"]["idleTimeout"] = "soon"
    status, body = await api.json("PUT", f"{MT}/t1", json=doc)
    assert status == 400
    assert fields(body) == [
        "spec.to[0].default.idleTimeout",
        "spec.from",
    ]


async def test_a_field_the_schema_refuses_is_not_reported_twice(api: Api) -> None:
    assert (await api.put("/meshes/default", mesh("default"))).status == 201
    doc = timeout_with_http()
    doc["spec"]["to"][0]["default"]["http"] = "not an object"
    status, body = await api.json("PUT", f"{MT}/t1", json=doc)
    assert status == 400
    assert fields(body).count("spec.to[0].default.http") == 1
