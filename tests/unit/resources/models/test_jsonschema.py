"""The schemas `/openapi.json` publishes: one full schema per type, generated from its model."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from meshfed.resources.models.jsonschema import DEF_PREFIX, REF_ROOT, spec_schemas
from meshfed.resources.types import default_registry

BODIES, DEFS = spec_schemas(default_registry())


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_type_has_a_generated_schema_whose_refs_resolve() -> None:
    registry = default_registry()
    assert set(BODIES) == set(registry.names())
    for name, body in BODIES.items():
        if name.endswith("Insight"):
            assert body.get("additionalProperties", True) is not False, name  # status: open
        else:
            assert body["additionalProperties"] is False and body["properties"], name
    for ref in refs(BODIES) + refs(DEFS):
        assert ref.startswith(REF_ROOT + DEF_PREFIX) and ref.removeprefix(REF_ROOT) in DEFS, ref
    assert not set(DEFS) & set(registry.names())  # no clash with the resources' own schemas


def resolver_schema(name: str) -> dict[str, Any]:
    """The body of `name` as a standalone schema (components under one document)."""
    return {**BODIES[name], "components": {"schemas": DEFS}}


def validate(name: str, body: Any) -> None:
    # refs point at #/components/schemas/..., which this document holds
    jsonschema_rs.Draft202012Validator(resolver_schema(name)).validate(body)


def test_documents_the_model_accepts_match_the_schema() -> None:
    validate(
        "MeshTimeout",
        {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": "backend"},
                    "default": {"connectionTimeout": "2s", "http": {"requestTimeout": "15s"}},
                }
            ],
        },
    )
    validate(
        "Dataplane",
        {
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
            }
        },
    )
    invalid = {"networking": {"address": "127.0.0.1", "inbound": [{"port": 0}]}}
    assert not jsonschema_rs.Draft202012Validator(resolver_schema("Dataplane")).is_valid(invalid)


def test_kuma_defaults_and_durations_read_as_documents_write_them() -> None:
    timeout = DEFS[DEF_PREFIX + "TimeoutConf"]["properties"]
    assert timeout["connectionTimeout"]["default"] == "5s"
    assert timeout["idleTimeout"]["default"] == "1h"
    assert timeout["connectionTimeout"]["type"] == "string"
    lb = DEFS[DEF_PREFIX + "LoadBalancer"]["properties"]["type"]
    assert lb["enum"] == ["RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"]
    cb = DEFS[DEF_PREFIX + "ConnectionLimits"]["properties"]
    assert set(cb) == {
        "maxConnections",
        "maxConnectionPools",
        "maxPendingRequests",
        "maxRetries",
        "maxRequests",
    }
