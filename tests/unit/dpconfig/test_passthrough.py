"""MeshPassthrough compiled for a sidecar and the passthrough proxy's decision. Pure."""

from __future__ import annotations

import ipaddress
from typing import Any

from meshfed.dpconfig.passthrough import (
    admitted_by_bytes,
    admitted_without_bytes,
    candidates,
    compile_passthrough,
    protocol_of,
)
from meshfed.policy.rules import Matched
from meshfed.resources.model import Resource
from tests.unit.policy.factories import mesh_resource, resource


def passthrough(name: str, default: dict[str, Any]) -> Matched:
    doc = {
        "type": "MeshPassthrough",
        "name": name,
        "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "default": default},
    }
    return Matched(resource(doc), frozenset({0}))


def mesh(passthrough: bool | None) -> Resource:
    if passthrough is None:
        return mesh_resource()
    doc = {
        "type": "Mesh",
        "name": "default",
        "networking": {"outbound": {"passthrough": passthrough}},
    }
    return resource(doc)


KAFKA = {"type": "Domain", "value": "*.cluster-1.kafka.aws.us-east-2.com", "protocol": "tls"}
DEV = {"type": "Domain", "value": "httpbin.dev", "protocol": "http", "port": 80}
NET = {"type": "CIDR", "value": "10.250.0.0/16", "protocol": "tcp", "port": 10000}
HOST = {"type": "IP", "value": "10.240.15.39", "protocol": "mysql"}


def test_the_mesh_decides_when_no_policy_selects_the_sidecar() -> None:
    assert compile_passthrough([], mesh(None)).mode == "All"  # Kuma's default: true
    assert compile_passthrough([], mesh(True)).mode == "All"
    closed = compile_passthrough([], mesh(False))
    assert closed.mode == "None" and closed.sources == ("Mesh/default",)


def test_modes_override_and_matches_append_in_policy_order() -> None:
    p = compile_passthrough(
        [
            passthrough("a", {"passthroughMode": "All", "appendMatch": [KAFKA]}),
            passthrough("b", {"passthroughMode": "Matched", "appendMatch": [DEV, NET]}),
        ],
        mesh(False),
    )
    assert p.mode == "Matched"
    assert [m.value for m in p.matches] == [
        "*.cluster-1.kafka.aws.us-east-2.com",
        "httpbin.dev",
        "10.250.0.0/16",
    ]
    assert p.sources == ("MeshPassthrough/a", "MeshPassthrough/b")
    # a later None empties the list: nothing passes
    none = compile_passthrough(
        [passthrough("c", {"passthroughMode": "None", "appendMatch": [DEV]})], mesh(True)
    )
    assert none.mode == "None" and none.matches == ()


def test_which_entries_match_a_destination() -> None:
    p = compile_passthrough(
        [passthrough("p", {"passthroughMode": "Matched", "appendMatch": [KAFKA, DEV, NET, HOST]})],
        mesh(None),
    )
    ip = ipaddress.ip_address
    assert [m.type for m in candidates(p, "b-1.cluster-1.kafka.aws.us-east-2.com", 9094, None)] == [
        "Domain"
    ]
    assert candidates(p, "cluster-1.kafka.aws.us-east-2.com", 443, None) == []  # *. needs a label
    assert [m.value for m in candidates(p, "HTTPBIN.dev", 80, ip("1.2.3.4"))] == ["httpbin.dev"]
    assert candidates(p, "httpbin.dev", 8080, ip("1.2.3.4")) == []  # port
    assert [m.type for m in candidates(p, "db.internal", 10000, ip("10.250.3.4"))] == ["CIDR"]
    assert candidates(p, "db.internal", 10001, ip("10.250.3.4")) == []
    assert [m.protocol for m in candidates(p, "10.240.15.39", 3306, ip("10.240.15.39"))] == [
        "mysql"
    ]


def test_protocols_are_told_by_the_first_bytes() -> None:
    assert protocol_of(b"\x16\x03\x01\x02\x00") == {"tls"}
    assert protocol_of(b"GET / HTTP/1.1\r\n") == {"http"}
    assert protocol_of(b"PRI * HTTP/2.0\r\n") == {"http2", "grpc"}
    assert protocol_of(b"\x00\x01binary") == set()
    p = compile_passthrough(
        [passthrough("p", {"passthroughMode": "Matched", "appendMatch": [KAFKA, HOST]})],
        mesh(None),
    )
    kafka, mysql = p.matches
    assert admitted_without_bytes([mysql]) and not admitted_without_bytes([kafka])
    assert admitted_by_bytes([kafka], b"\x16\x03\x01") and not admitted_by_bytes([kafka], b"GET ")
