"""The pure part of MADS (zone_cp/mads.py): assignments per client id as Kuma builds them,
versions that change with them, and the parsing of Prometheus's kuma_sd requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy
from zone_cp.mads import (
    DEFAULT_CLIENT,
    DEFAULT_FETCH_TIMEOUT,
    TYPE_URL,
    RequestError,
    assignments,
    parse_fetch_timeout,
    parse_request,
    pick,
    response,
    snapshots,
)

ZONE = "zone-1"


def metric(name: str, target: dict[str, Any], *backends: dict[str, Any]) -> Any:
    return policy("MeshMetric", name, target, default={"backends": list(backends)})


def prom(**fields: Any) -> dict[str, Any]:
    return {"type": "Prometheus", "prometheus": fields}


WEB = dataplane("web-1", inbound("web", 8080), address="10.0.0.1")
API = dataplane("api-1", inbound("api", 8080, tags={"team": "x"}), address="10.0.0.2")
V6 = dataplane("db-1", inbound("db", 5432), address="fd00::1")


def test_each_selected_sidecar_gets_the_backend_of_its_client() -> None:
    policies = [
        metric("all", MESH_REF, prom(port=5670)),
        metric(
            "team-x",
            {"kind": "MeshSubset", "tags": {"team": "x"}},
            prom(clientId="main", port=9000, path="/p", tls={"mode": "ProvidedTLS"}),
        ),
    ]
    got = assignments([WEB, API, V6], policies, ZONE)
    assert set(got) == {DEFAULT_CLIENT, "main"}
    assert got["main"] == [
        {
            "@type": TYPE_URL,
            "mesh": "default",
            "service": "api",
            "targets": [
                {
                    "name": "api-1",
                    "scheme": "https",
                    "address": "10.0.0.2:9000",
                    "metrics_path": "/p",
                    "labels": {},
                }
            ],
            "labels": {},
        }
    ]
    # the more specific policy replaced api-1's backends (lists merge whole)
    names = [a["targets"][0]["name"] for a in got[DEFAULT_CLIENT]]
    assert names == ["db-1", "web-1"]
    db = got[DEFAULT_CLIENT][0]["targets"][0]
    assert (db["address"], db["scheme"], db["metrics_path"]) == (
        "[fd00::1]:5670",
        "http",
        "/metrics",
    )


def test_one_assignment_per_sidecar_and_client_other_zones_and_other_backends_left_out() -> None:
    elsewhere = dataplane("far-1", inbound("web", 1), labels={"kuma.io/zone": "zone-2"})
    policies = [
        metric(
            "m",
            MESH_REF,
            prom(clientId="a", port=1000),
            prom(clientId="a", port=2000),
            prom(clientId="b"),
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "c:4317"}},
        )
    ]
    got = assignments([WEB, elsewhere], policies, ZONE)
    assert {c: [a["targets"][0]["address"] for a in v] for c, v in got.items()} == {
        "a": ["10.0.0.1:1000"],
        "b": ["10.0.0.1:5670"],
    }
    assert assignments([WEB], [], ZONE) == {}
    other_mesh = policy("MeshMetric", "o", MESH_REF, mesh="other", default={"backends": [prom()]})
    assert assignments([WEB], [other_mesh], ZONE) == {}


def test_versions_change_exactly_when_assignments_do_and_unknown_clients_get_the_default() -> None:
    base = snapshots(assignments([WEB], [metric("m", MESH_REF, prom(clientId="a"))], ZONE))
    assert base[DEFAULT_CLIENT].resources == ()  # always there, empty here
    again = snapshots(assignments([WEB], [metric("m", MESH_REF, prom(clientId="a"))], ZONE))
    assert base["a"].version == again["a"].version
    moved = snapshots(assignments([WEB], [metric("m", MESH_REF, prom(clientId="a", port=1))], ZONE))
    assert moved["a"].version != base["a"].version
    assert pick(base, "nobody") is base[DEFAULT_CLIENT]
    assert pick(base, "a") is base["a"]
    body = response(base["a"])
    assert body["version_info"] == base["a"].version and body["type_url"] == TYPE_URL
    assert body["resources"] == list(base["a"].resources)


def test_requests_as_prometheus_sends_them() -> None:
    sent = {
        "version_info": "v1",
        "response_nonce": "",
        "type_url": TYPE_URL,
        "resource_names": [],
        "node": {"id": "main"},
    }
    req = parse_request(json.dumps(sent).encode())
    assert (req.client, req.version) == ("main", "v1")
    assert parse_request(b'{"versionInfo": "v2"}').version == "v2"
    assert parse_request(b"{}").client == ""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"node": 3}', "`node`"),
        (b'{"node": {"id": 3}}', "node.id"),
        (b'{"version_info": []}', "version_info"),
    ],
)
def test_bad_requests_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(RequestError, match=reason):
        parse_request(body)


def test_fetch_timeout() -> None:
    assert parse_fetch_timeout(None) == DEFAULT_FETCH_TIMEOUT
    assert parse_fetch_timeout("2m") == 120.0
    assert parse_fetch_timeout("1m30s") == 90.0
    assert parse_fetch_timeout("0s") == 0.0
    assert parse_fetch_timeout("-5s") == 0.0
    assert parse_fetch_timeout("100h") == 600.0
    with pytest.raises(RequestError, match="fetch-timeout"):
        parse_fetch_timeout("soon")


# --- the wire form, checked with protobuf's own JSON mapping ---------------------------------
# Prometheus decodes the answer with protojson into envoy's DiscoveryResponse, whose Any
# resources resolve to kuma.observability.v1.MonitoringAssignment (Kuma's mads.proto). The
# messages are declared here from those .proto files' field numbers (no generated code in the
# lock); json_format refuses unknown fields, a stricter reader than Prometheus's.


def _pool() -> Any:
    from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool

    f = descriptor_pb2.FieldDescriptorProto
    string, message, repeated = f.TYPE_STRING, f.TYPE_MESSAGE, f.LABEL_REPEATED

    def add(msg: Any, name: str, number: int, kind: int = string, **extra: Any) -> None:
        msg.field.add(name=name, number=number, type=kind, label=f.LABEL_OPTIONAL, **extra)

    def string_map(msg: Any, name: str, number: int, entry: str) -> None:
        nested = msg.nested_type.add(name=entry)
        nested.options.map_entry = True
        add(nested, "key", 1)
        add(nested, "value", 2)
        add(msg, name, number, message, type_name=entry)
        msg.field[-1].label = repeated

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    xds = descriptor_pb2.FileDescriptorProto(
        name="xds.proto", package="xds", syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    node = xds.message_type.add(name="Node")
    add(node, "id", 1)
    req = xds.message_type.add(name="DiscoveryRequest")
    add(req, "version_info", 1)
    add(req, "node", 2, message, type_name=".xds.Node")
    add(req, "resource_names", 3)
    req.field[-1].label = repeated
    add(req, "type_url", 4)
    add(req, "response_nonce", 5)
    res = xds.message_type.add(name="DiscoveryResponse")
    add(res, "version_info", 1)
    add(res, "resources", 2, message, type_name=".google.protobuf.Any")
    res.field[-1].label = repeated
    add(res, "type_url", 4)
    add(res, "nonce", 5)
    pool.Add(xds)
    mads = descriptor_pb2.FileDescriptorProto(
        name="mads.proto", package="kuma.observability.v1", syntax="proto3"
    )
    ma = mads.message_type.add(name="MonitoringAssignment")
    add(ma, "mesh", 2)
    add(ma, "service", 3)
    target = ma.nested_type.add(name="Target")
    for number, name in enumerate(("name", "scheme", "address", "metrics_path"), 1):
        add(target, name, number)
    string_map(target, "labels", 5, "LabelsEntry")
    add(ma, "targets", 4, message, type_name=".kuma.observability.v1.MonitoringAssignment.Target")
    ma.field[-1].label = repeated
    string_map(ma, "labels", 5, "LabelsEntry")
    pool.Add(mads)
    return pool


def test_the_answer_and_the_request_in_protobufs_json_mapping() -> None:
    from google.protobuf import json_format, message_factory

    pool = _pool()

    def new(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))()

    got = assignments([WEB], [metric("m", MESH_REF, prom(clientId="a", path="/x"))], ZONE)
    text = json.dumps(response(snapshots(got)["a"]))
    answer = json_format.Parse(text, new("xds.DiscoveryResponse"), descriptor_pool=pool)
    assert answer.type_url == TYPE_URL and answer.version_info
    (packed,) = answer.resources
    assert packed.type_url == TYPE_URL
    one = new("kuma.observability.v1.MonitoringAssignment")
    assert packed.Unpack(one)
    assert (one.mesh, one.service) == ("default", "web")
    (target,) = one.targets
    assert (target.name, target.scheme, target.address, target.metrics_path) == (
        "web-1",
        "http",
        "10.0.0.1:5670",
        "/x",
    )
    sent = new("xds.DiscoveryRequest")
    sent.version_info, sent.type_url, sent.node.id = "v9", TYPE_URL, "a"
    req = parse_request(json_format.MessageToJson(sent, preserving_proto_field_name=True).encode())
    assert (req.client, req.version) == ("a", "v9")


def test_mads_address_is_off_unless_given() -> None:
    from meshfed.config import Address
    from zone_cp.settings import parse_mads_address

    assert parse_mads_address("") is None
    assert parse_mads_address("127.0.0.1:5676") == Address("127.0.0.1", 5676)
