"""Where a document goes and what applying it amounts to (no server involved)."""

from __future__ import annotations

from typing import Any

import pytest

from meshctl.commands.apply import classify, target_of
from meshctl.errors import CliError
from meshfed.resources.types import default_registry

REG = default_registry()


def test_targets_of_mesh_scoped_and_global_types() -> None:
    mtp = target_of({"type": "MeshTrafficPermission", "mesh": "prod", "name": "a b"}, REG)
    assert mtp.path == "/meshes/prod/meshtrafficpermissions/a%20b"
    assert mtp.label == 'MeshTrafficPermission "a b"'
    mesh = target_of({"type": "Mesh", "name": "prod"}, REG)
    assert mesh.path == "/meshes/prod"
    zone = target_of({"type": "Zone", "name": "z1", "mesh": "ignored-for-path"}, REG)
    assert zone.path == "/zones/z1"


@pytest.mark.parametrize(
    ("doc", "field", "needle"),
    [
        ([1, 2], None, "must be an object"),
        ({"name": "x"}, "type", "missing 'type'"),
        ({"type": "meshtimeout", "name": "x"}, "type", 'did you mean "MeshTimeout"'),
        ({"type": "Banana", "name": "x"}, "type", "Banana"),
        ({"type": "Mesh"}, "name", "without a name"),
        ({"type": "MeshRetry", "name": "r"}, "mesh", "has no mesh"),
        ({"type": "MeshRetry", "name": "r", "mesh": 3}, "mesh", "has no mesh"),
    ],
)
def test_documents_that_cannot_be_placed(doc: Any, field: str | None, needle: str) -> None:
    with pytest.raises(CliError) as err:
        target_of(doc, REG)
    text = err.value.message + "\n" + "\n".join(err.value.details)
    assert needle in text
    if field:
        assert any(d.startswith(field + ":") for d in err.value.details)


MT = REG.get("MeshTimeout")
MESH = REG.get("Mesh")


def _mt(spec: dict[str, Any], labels: dict[str, str] | None = None, **meta: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "MeshTimeout", "mesh": "default", "name": "t", **meta}
    if labels is not None:
        doc["labels"] = labels
    doc["spec"] = spec
    return doc


def test_classify_created_configured_unchanged() -> None:
    spec = {"targetRef": {"kind": "Mesh"}}
    stored = _mt(spec, {"kuma.io/origin": "global"}, creationTime="t0", modificationTime="t1")
    assert classify(None, _mt(spec), MT) == "created"
    # times and a system label the document does not mention do not count
    assert classify(stored, _mt(spec), MT) == "unchanged"
    assert classify(stored, stored, MT) == "unchanged"
    assert classify(stored, _mt({"targetRef": {"kind": "MeshService"}}), MT) == "configured"
    assert classify(stored, _mt(spec, {"team": "a"}), MT) == "configured"
    assert classify(stored, _mt(spec, {"kuma.io/origin": "zone"}), MT) == "configured"


def test_classify_user_label_removed_is_a_change() -> None:
    stored = _mt({}, {"team": "a"})
    assert classify(stored, _mt({}), MT) == "configured"


def test_classify_top_level_types_compare_their_fields() -> None:
    stored = {"type": "Mesh", "name": "m", "creationTime": "x", "mtls": {"enabledBackend": "ca"}}
    assert classify(
        stored, {"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "ca"}}, MESH
    ) == ("unchanged")
    assert classify(stored, {"type": "Mesh", "name": "m"}, MESH) == "configured"


def test_a_kuma_type_meshfed_does_not_have_is_refused_naming_why() -> None:
    with pytest.raises(CliError) as info:
        target_of({"type": "MeshProxyPatch", "mesh": "default", "name": "p"}, REG)
    assert str(info.value).startswith("MeshProxyPatch is not supported by meshfed: ")
    assert "Envoy" in str(info.value)
