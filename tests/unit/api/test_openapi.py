"""What /openapi.json declares beside the schemas of the types: every answer an operation can
give (refusals, body errors, headers) and the parameters it reads, so that a client generated
from it, and schemathesis (tests/integration/api/test_openapi_conformance.py), agree with the
server."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest

from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.api.openapi import openapi_document
from meshfed.api.routes import ROUTES
from meshfed.resources.codec import is_name
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.unit.api.conftest import Api, mesh

ERROR = {"$ref": "#/components/schemas/Error"}


def document(mode: Mode) -> dict[str, Any]:
    ctx = ApiContext(store=MemoryStore(), registry=default_registry(), mode=mode)
    return openapi_document(build_app(ctx)[ROUTES], "meshfed API", "0")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, m, op) for path, ops in doc["paths"].items() for m, op in ops.items()]


@pytest.mark.parametrize("mode", [Mode.GLOBAL, Mode.ZONE])
def test_every_operation_declares_the_refusals_it_can_answer(mode: Mode) -> None:
    for path, method, op in operations(document(mode)):
        responses = op["responses"]
        # An invalid token is refused on every route, with the challenge header.
        assert responses["401"]["content"]["application/json"]["schema"] == ERROR, (path, method)
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        if op["x-meshfed-access"] == "admin":
            assert op["security"] == [{"userToken": []}]
            assert responses["403"]["content"]["application/json"]["schema"] == ERROR
        else:
            assert op["security"] == [{}, {"userToken": []}]
            assert "403" not in responses, (path, method)
        if "requestBody" in op:
            for status in ("400", "413", "415"):
                assert responses[status]["content"]["application/json"]["schema"] == ERROR
        if "405" in responses:
            assert responses["405"]["headers"]["Allow"]["required"] is True


def test_resource_paths_declare_names_if_match_and_etag() -> None:
    paths = document(Mode.GLOBAL)["paths"]
    item = paths["/meshes/{mesh}/meshtimeouts/{name}"]
    params = {p["name"]: p for p in item["put"]["parameters"]}
    name = params["name"]["schema"]
    assert params["mesh"]["schema"] == name
    assert (params["If-Match"]["in"], params["dryRun"]["in"]) == ("header", "query")
    assert "If-Match" in {p["name"] for p in item["delete"]["parameters"]}
    assert set(item["delete"]["responses"]) >= {"200", "400", "404", "405", "409"}
    assert item["get"]["responses"]["200"]["headers"]["ETag"]["required"] is True
    # A dry run stores nothing and sends no ETag.
    assert item["put"]["responses"]["201"]["headers"]["ETag"].get("required") is not True
    kind = paths["/tokens/signing-keys/{kind}"]["post"]["parameters"][0]["schema"]
    assert kind == {"type": "string", "enum": ["user", "zone"]}
    # The declared pattern is the name rule the server applies.
    pattern = re.compile(name["pattern"])
    for value in ("default", "a.b-c", "0", "x" * 253, "A", "a..b", "-a", "a_b", "x" * 254):
        declared = pattern.search(value) is not None and len(value) <= name["maxLength"]
        assert declared == is_name(value), value


async def test_system_answers_match_their_declared_schemas(api: Api) -> None:
    """The schemas written by hand for the non-resource answers hold for real answers."""
    doc = document(Mode.GLOBAL)
    checks = [("/", "get"), ("/_resources", "get"), ("/ready", "get")]
    for path, method in checks:
        schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        status, body = await api.json(method.upper(), path)
        assert status == 200
        jsonschema_rs.validator_for(schema["schema"]).validate(body)
    resp = await api.client.post("/tokens/signing-keys/user")
    declared = doc["paths"]["/tokens/signing-keys/{kind}"]["post"]["responses"]["201"]
    jsonschema_rs.validator_for(declared["content"]["application/json"]["schema"]).validate(
        await resp.json()
    )
    assert (await api.put("/meshes/other", mesh("other"))).status == 201
    status, body = await api.json("DELETE", "/meshes/other")
    declared = doc["paths"]["/meshes/{name}"]["delete"]["responses"]["200"]
    jsonschema_rs.validator_for(declared["content"]["application/json"]["schema"]).validate(body)
