"""Tables, ages, YAML that can be applied back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from meshctl.documents import parse_documents
from meshctl.output import dump_yaml, format_age, render_table, resource_table, to_resource
from meshfed.resources.descriptors import Mode, Scope, TypeDescriptor
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _ago(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_render_table_aligns_columns_without_trailing_blanks() -> None:
    out = render_table(["NAME", "AGE"], [["a-long-name", "5s"], ["b", ""]])
    assert out.splitlines() == ["NAME          AGE", "a-long-name   5s", "b"]


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=3), "3m"),
        (timedelta(hours=5), "5h"),
        (timedelta(days=3, hours=2), "3d"),
        (timedelta(seconds=-30), "0s"),  # clock skew: never negative
    ],
)
def test_age(delta: timedelta, expected: str) -> None:
    assert format_age(_ago(delta), NOW) == expected


def test_age_of_nanosecond_timestamps_and_garbage() -> None:
    assert format_age("2024-05-01T11:59:00.123456789Z", NOW) == "59s"
    assert format_age("yesterday", NOW) == "-"
    assert format_age(None, NOW) == "-"


def test_fallback_columns_mesh_name_age() -> None:
    desc = default_registry().get("MeshTimeout")
    desc_without_columns = TypeDescriptor(
        name=desc.name, plural=desc.plural, scope=desc.scope, spec_wrapped=True, owner=desc.owner
    )
    items = [
        {
            "type": "MeshTimeout",
            "mesh": "default",
            "name": "t1",
            "creationTime": _ago(timedelta(minutes=10)),
        },
        {"type": "MeshTimeout", "mesh": "other", "name": "timeout-2"},
    ]
    lines = resource_table(desc_without_columns, items, NOW).splitlines()
    assert lines == [
        "MESH      NAME        AGE",
        "default   t1          10m",
        "other     timeout-2   -",
    ]


def test_global_type_has_no_mesh_column() -> None:
    desc = TypeDescriptor(
        name="Zone", plural="zones", scope=Scope.GLOBAL, spec_wrapped=False, owner=Mode.GLOBAL
    )
    out = resource_table(desc, [{"type": "Zone", "name": "zone-1"}], NOW)
    assert out.splitlines()[0].split() == ["NAME", "AGE"]


def test_descriptor_columns_get_a_resource_and_a_broken_cell_does_not_break_the_table() -> None:
    def enabled(res: Resource) -> str:
        return "yes" if res.spec["enabled"] else "no"

    desc = TypeDescriptor(
        name="Zone",
        plural="zones",
        scope=Scope.GLOBAL,
        spec_wrapped=False,
        owner=Mode.GLOBAL,
        columns=(("Enabled", enabled), ("name", lambda r: r.name.upper())),
    )
    items: list[dict[str, Any]] = [
        {"type": "Zone", "name": "z1", "enabled": True},
        {"type": "Zone", "name": "z2"},
    ]
    lines = resource_table(desc, items, NOW).splitlines()
    # the descriptor provides NAME itself, so it is not added twice
    assert lines[0].split() == ["ENABLED", "NAME", "AGE"]
    assert lines[1].split() == ["yes", "Z1", "-"]
    assert lines[2].split() == ["?", "Z2", "-"]


def test_to_resource_splits_meta_from_body() -> None:
    registry = default_registry()
    res = to_resource(
        {"type": "Mesh", "name": "m", "labels": {"a": "b"}, "mtls": {"enabledBackend": "ca"}},
        registry.get("Mesh"),
    )
    assert (res.name, res.meta.labels, res.spec) == (
        "m",
        {"a": "b"},
        {"mtls": {"enabledBackend": "ca"}},
    )
    wrapped = to_resource(
        {"type": "MeshRetry", "mesh": "d", "name": "r", "spec": {"to": []}},
        registry.get("MeshRetry"),
    )
    assert (wrapped.mesh, wrapped.spec) == ("d", {"to": []})


def test_yaml_output_keeps_api_order_and_reads_back_identically() -> None:
    item = {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": "allow",
        "creationTime": "2024-05-01T12:00:00.000001Z",
        "modificationTime": "2024-05-01T12:00:00.000001Z",
        "labels": {"kuma.io/origin": "global", "team": "yes"},
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
        },
    }
    text = dump_yaml(item)
    assert text.splitlines()[0] == "type: MeshTrafficPermission"
    assert list(yaml.safe_load(text)) == list(item)
    assert [d.data for d in parse_documents(text, "-")] == [item]
