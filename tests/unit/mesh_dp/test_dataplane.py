"""The Dataplane mesh-dp announces: from a document, inline text, or flags; validated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mesh_dp.dataplane import (
    DataplaneError,
    build_dataplane,
    load_document,
    parse_inbound_flag,
    parse_services,
)

DOC = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.1.10
  inbound:
    - port: 18000
      servicePort: 3000
      tags: {kuma.io/service: web}
  transparentProxying:
    reachableServices: [backend, redis]
"""


def test_document_with_reachable_services() -> None:
    spec = build_dataplane(document=load_document(DOC, "dp.yaml"))
    assert spec.name == "web-1"
    assert spec.reachable == frozenset({"backend", "redis"})
    assert "transparentProxying" not in spec.document["networking"]
    assert spec.document["type"] == "Dataplane" and spec.document["mesh"] == "default"


def test_flags_override_and_add() -> None:
    spec = build_dataplane(
        document=load_document(DOC, "dp.yaml"),
        name="web-2",
        mesh="payments",
        address="127.0.1.11",
        reachable=frozenset({"web"}),
    )
    assert (spec.name, spec.mesh) == ("web-2", "payments")
    assert spec.document["networking"]["address"] == "127.0.1.11"
    assert spec.reachable == frozenset({"backend", "redis", "web"})


def test_from_flags_alone() -> None:
    spec = build_dataplane(address="127.0.0.5", inbounds=["18080:8080:backend", "9000:admin"])
    inbounds = spec.document["networking"]["inbound"]
    assert inbounds == [
        {"port": 18080, "servicePort": 8080, "tags": {"kuma.io/service": "backend"}},
        {"port": 9000, "tags": {"kuma.io/service": "admin"}},
    ]
    assert spec.name == "backend"  # named after its first service
    assert spec.mesh == "default"
    assert spec.reachable is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no Dataplane: give --dataplane-file"),
        ({"address": "127.0.0.1", "inbounds": ["x"]}, "expected PORT:SERVICE_PORT:SERVICE"),
        ({"address": "127.0.0.1", "inbounds": ["a:b:c"]}, "ports must be integers"),
        (
            {
                "document": {
                    "name": "w",
                    "networking": {"transparentProxying": {"reachableServices": "backend"}},
                }
            },
            "reachableServices must be a list",
        ),
        (
            {"document": {"type": "Mesh", "name": "w"}},
            "type: must be 'Dataplane'",
        ),
        (
            {"document": {"name": "w"}, "inbounds": ["1:w"]},
            "not both",
        ),
        (  # the API's envelope rules, without the resource schema (decision 187)
            {"document": {"name": "Web_1", "labels": {"a/b/c": "x"}}, "mesh": "M"},
            r"not a valid Dataplane: name: must be a lowercase RFC 1123 subdomain.*; "
            r"mesh: must be a lowercase .*; labels\['a/b/c'\]: invalid label key",
        ),
    ],
)
def test_errors_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataplaneError, match=message):
        build_dataplane(**kwargs)  # type: ignore[arg-type]


def test_the_spec_is_left_to_zone_cp() -> None:
    """Spec problems are zone-cp's to name (it refuses the Hello): the sidecar does not load
    the API's validators (pydantic) for them."""
    spec = build_dataplane(address="127.0.0.1", inbounds=["70000:web"])
    assert spec.document["networking"]["inbound"][0]["port"] == 70000
    probe = (
        "import sys\n"
        "from mesh_dp.dataplane import build_dataplane\n"
        "build_dataplane(document={'name': 'w', 'networking': {'address': '127.0.0.1', "
        "'inbound': [{'port': 1, 'tags': {'kuma.io/service': 'w'}}]}})\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_documents_must_be_one_object() -> None:
    with pytest.raises(DataplaneError, match="not valid YAML"):
        load_document("a: [", "dp.yaml")
    with pytest.raises(DataplaneError, match="must be one Dataplane object"):
        load_document("- a\n- b\n", "dp.yaml")
    assert parse_inbound_flag("1:2:svc")["servicePort"] == 2
    assert parse_services(" a, ,b ") == {"a", "b"}


def test_json_and_yaml_documents_read_alike() -> None:
    """JSON is read without PyYAML (decision 184); YAML still loads, and both agree."""
    as_json = '{"type": "Dataplane", "name": "w", "networking": {"inbound": [{"port": 1}]}}'
    as_yaml = "type: Dataplane\nname: w\nnetworking:\n  inbound:\n  - port: 1\n"
    assert load_document(as_json, "a") == load_document(as_yaml, "b")
    assert load_document(as_json, "a")["networking"]["inbound"][0]["port"] == 1
