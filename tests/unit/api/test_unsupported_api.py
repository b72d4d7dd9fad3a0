"""Kuma types meshfed does not have answer 400 naming the type and why on each of their REST
paths (not 404), and /openapi.json documents those paths."""

from __future__ import annotations

import pytest

from meshfed.resources.descriptors import Scope
from meshfed.resources.unsupported import UNSUPPORTED_TYPES, UnsupportedType
from tests.unit.api.conftest import Api, assert_std_error, mesh
from tests.unit.api.test_resources_api import rejected


def requests(entry: UnsupportedType) -> list[tuple[str, str]]:
    base = f"/meshes/default/{entry.plural}" if entry.scope is Scope.MESH else f"/{entry.plural}"
    out = [("GET", base), ("GET", f"{base}/x"), ("PUT", f"{base}/x"), ("DELETE", f"{base}/x")]
    if entry.scope is Scope.MESH:
        out.append(("GET", f"/{entry.plural}"))
    return out


@pytest.mark.parametrize("entry", UNSUPPORTED_TYPES, ids=lambda e: e.name)
async def test_every_path_of_an_unsupported_type_answers_400_naming_it(
    api: Api, entry: UnsupportedType
) -> None:
    assert (await api.put("/meshes/default", mesh("default"))).status == 201
    for method, path in requests(entry):
        doc = {"type": entry.name, "name": "x", "mesh": "default"}
        body = await rejected(api, method, path, 400, json=doc if method == "PUT" else None)
        assert body["detail"] == entry.message()
        assert body["invalid_parameters"] == [{"field": "type", "reason": entry.message()}]


async def test_mesh_proxy_patch_says_why_never(api: Api) -> None:
    status, body = await api.json("PUT", "/meshes/default/meshproxypatches/p", json={})
    assert status == 400
    assert "MeshProxyPatch is not supported by meshfed" in body["detail"]
    assert "Envoy" in body["detail"]


async def test_an_unknown_path_is_still_404(api: Api) -> None:
    status, body = await api.json("GET", "/meshes/default/meshbananas")
    assert status == 404
    assert_std_error(body, 404)


async def test_openapi_documents_the_unsupported_paths(api: Api) -> None:
    status, doc = await api.json("GET", "/openapi.json")
    assert status == 200
    for entry in UNSUPPORTED_TYPES:
        for method, path in requests(entry):
            template = path.replace("/default/", "/{mesh}/").replace("/x", "/{name}")
            operation = doc["paths"][template][method.lower()]
            assert "400" in operation["responses"]
