"""Table columns (`meshctl get`): useful cells for good data, "-" rather than a crash for odd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.resources.descriptors import TypeDescriptor
from meshfed.resources.model import Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.common import format_age


def row(type_name: str, spec: dict[str, Any], **meta: Any) -> dict[str, str]:
    desc = default_registry().get(type_name)
    res = Resource(type=type_name, meta=Meta(**{"name": "n", **meta}), spec=spec)
    return {title: fn(res) for title, fn in desc.columns}


def titles(type_name: str) -> list[str]:
    return [title for title, _ in default_registry().get(type_name).columns]


def test_every_type_has_name_and_age_columns() -> None:
    for desc in default_registry():
        names = [t for t, _ in desc.columns]
        assert names[0] == "NAME" and names[-1] == "AGE", desc.name


def test_policy_columns() -> None:
    assert titles("MeshTrafficPermission") == ["NAME", "MESH", "TARGETREF", "FROM", "RULES", "AGE"]
    assert titles("MeshTimeout") == ["NAME", "MESH", "TARGETREF", "TO", "FROM", "RULES", "AGE"]
    assert titles("MeshRetry") == ["NAME", "MESH", "TARGETREF", "TO", "AGE"]
    cells = row(
        "MeshTimeout",
        {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{}, {}],
            "from": [{}],
        },
        mesh="default",
    )
    assert cells == {
        "NAME": "n",
        "MESH": "default",
        "TARGETREF": "MeshService:web",
        "TO": "2",
        "FROM": "1",
        "RULES": "0",
        "AGE": "-",
    }


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        (None, "Mesh"),
        ({"kind": "Mesh"}, "Mesh"),
        (
            {"kind": "MeshSubset", "tags": {"env": "prod", "zone": "a"}},
            "MeshSubset:env=prod,zone=a",
        ),
        (
            {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}},
            "MeshServiceSubset:web version=v1",
        ),
        (
            {"kind": "Dataplane", "labels": {"app": "web"}, "sectionName": "http"},
            "Dataplane:app=web [http]",
        ),
        ("garbage", "Mesh"),
    ],
)
def test_target_ref_cell(ref: Any, text: str) -> None:
    spec = {"from": []} if ref is None else {"targetRef": ref}
    assert row("MeshTrafficPermission", spec)["TARGETREF"] == text


def test_dataplane_and_zone_ingress_cells() -> None:
    dp = row(
        "Dataplane",
        {
            "networking": {
                "address": "10.0.0.5",
                "inbound": [
                    {"port": 1, "tags": {"kuma.io/service": "web"}},
                    {"port": 2, "tags": {"kuma.io/service": "web-admin"}},
                    {"port": 3, "tags": {"kuma.io/service": "web"}},
                ],
            }
        },
        mesh="default",
        labels={"kuma.io/zone": "zone-1"},
    )
    assert dp == {
        "NAME": "n",
        "MESH": "default",
        "ZONE": "zone-1",
        "ADDRESS": "10.0.0.5",
        "SERVICES": "web,web-admin",
        "AGE": "-",
    }
    zi = row(
        "ZoneIngress",
        {
            "zone": "zone-2",
            "networking": {
                "address": "127.0.0.1",
                "port": 10001,
                "advertisedAddress": "10.0.0.1",
                "advertisedPort": 10000,
            },
            "availableServices": [{"tags": {}}, {"tags": {}}],
        },
    )
    assert zi == {
        "NAME": "n",
        "ZONE": "zone-2",
        "ADDRESS": "10.0.0.1:10000",
        "SERVICES": "2",
        "AGE": "-",
    }
    plain = row("ZoneIngress", {"networking": {"address": "127.0.0.1", "port": 10001}})
    assert plain["ADDRESS"] == "127.0.0.1:10001"


def test_mesh_zone_secret_cells() -> None:
    assert row("Mesh", {"mtls": {"enabledBackend": "ca-1"}})["MTLS"] == "ca-1"
    assert row("Mesh", {})["MTLS"] == "off"
    assert row("Zone", {})["ENABLED"] == "true"
    assert row("Zone", {"enabled": False})["ENABLED"] == "false"
    assert titles("Secret") == ["NAME", "MESH", "AGE"]  # never the data itself


def test_age() -> None:
    now = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)

    def ago(delta: timedelta) -> str:
        return format_age((now - delta).isoformat().replace("+00:00", "Z"), now)

    assert ago(timedelta(seconds=45)) == "45s"
    assert ago(timedelta(minutes=5)) == "5m"
    assert ago(timedelta(hours=3)) == "3h"
    assert ago(timedelta(days=9)) == "9d"
    assert ago(timedelta(seconds=-30)) == "0s"
    assert format_age("", now) == "-"
    assert format_age("yesterday", now) == "-"
    assert format_age("2024-05-10T09:00:00", now) == "3h"  # no zone: taken as UTC
    recent = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert row("Zone", {}, creation_time=recent)["AGE"] == "3m"


ODD = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
FIELDS = [
    "targetRef",
    "to",
    "from",
    "rules",
    "networking",
    "mtls",
    "zone",
    "enabled",
    "availableServices",
    "address",
    "inbound",
    "kind",
    "name",
    "tags",
]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(default_registry())),
    st.dictionaries(st.sampled_from(FIELDS), ODD, max_size=4),
    st.text(max_size=30),
)
def test_columns_never_raise(desc: TypeDescriptor, spec: dict[str, Any], created: str) -> None:
    nested = {k: {f: v for f in FIELDS} if isinstance(v, dict) else v for k, v in spec.items()}
    for body in (spec, nested):
        res = Resource(type=desc.name, meta=Meta(name="n", creation_time=created), spec=body)
        for _, fn in desc.columns:
            assert isinstance(fn(res), str)
