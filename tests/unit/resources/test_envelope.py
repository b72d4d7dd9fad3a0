"""The proxies check the resource their Hello announces with meshfed.resources.envelope, not
the codec (decision 187): for the types they announce, it must say what the codec says of
an envelope and write the document as the codec does."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.envelope import envelope_errors, in_kuma_order
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry

SPEC = {"networking": {"address": "127.0.0.1", "inbound": [{"port": 1}]}}


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Dataplane", "mesh": "default", "name": "web-1", **SPEC},
        {"name": "web-1", "type": "Dataplane", "mesh": "m", "labels": {"a": "b"}, **SPEC},
        {"type": "Dataplane", "mesh": "m", "name": "w", "labels": {}, "creationTime": "", **SPEC},
        {"type": "Dataplane", "mesh": "m", "name": "w", "creationTime": "2024-01-01T00:00:00Z"},
        {"type": "Dataplane", "mesh": "Bad_Mesh", "name": "-w", **SPEC},
        {"type": "Dataplane", "name": "w", **SPEC},
        {"type": "Dataplane", "mesh": "m", "name": "w", "labels": {"kuma.io/effect": "shadow"}},
        {"type": "Dataplane", "mesh": "m", "name": "w", "labels": {"a/b/c": 1, "x": "y" * 64}},
        {"type": "Dataplane", "mesh": "m", "name": "w", "modificationTime": 5},
        {"type": "Dataplane", "mesh": "m", "name": 7, "labels": "x"},
        {"type": "ZoneIngress", "name": "ingress-1", **SPEC},
        {"type": "ZoneEgress", "name": "egress-1", "mesh": "default", **SPEC},
        {"type": "ZoneIngress", "name": "Ingress!", "labels": {"k": "v"}, **SPEC},
    ],
)
def test_the_envelope_is_the_codecs(doc: dict[str, Any]) -> None:
    kind = doc["type"]
    desc = default_registry().get(kind)
    errors = envelope_errors(doc, kind, mesh_scoped=kind == "Dataplane")
    try:
        resource = resource_from_dict(doc, default_registry(), expected_type=kind, validate=False)
    except ValidationError as exc:
        assert [(e.field, e.reason) for e in errors] == [(e.field, e.reason) for e in exc.errors]
        assert errors
    else:
        assert errors == []
        assert in_kuma_order(doc) == resource_to_dict(resource, desc)
        assert list(in_kuma_order(doc)) == list(resource_to_dict(resource, desc))


def test_another_type_is_named() -> None:
    first = envelope_errors({"type": "Mesh"}, "Dataplane", mesh_scoped=True)[0]
    assert (first.field, first.reason) == ("type", "must be 'Dataplane'")
    assert envelope_errors({"name": "w"}, "Dataplane", mesh_scoped=True)[0].field == "type"
