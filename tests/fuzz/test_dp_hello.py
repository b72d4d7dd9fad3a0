"""Fuzzing the first message of a dataplane config stream (`parse_hello`, run by zone-cp on
every sidecar and ingress connection): any bytes and any field values give a Hello or a
ProtocolError with a message, never another exception; a Hello it accepts holds a resource the
API would accept too."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.protocol import ProtocolError, parse_hello
from meshfed.kds.receive import validator
from meshfed.resources.types import default_registry
from tests.bounds import fuzz
from tests.fuzz.test_resource_documents import JSON, MUTATION, mutate

REG = default_registry()
CHECK = validator(REG)
DATAPLANE: dict[str, Any] = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {
        "address": "10.0.0.1",
        "inbound": [{"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web"}}],
    },
}
INGRESS: dict[str, Any] = {
    "type": "ZoneIngress",
    "name": "zi-1",
    "networking": {"address": "10.0.0.2", "port": 10001},
}
SERVICES = st.lists(
    st.one_of(st.sampled_from(["web", "backend", "a" * 254, "", "bad name", "x:y"]), st.text()),
    max_size=5,
)


def check(msg: pb.DpMessage) -> None:
    try:
        hello = parse_hello(msg, REG)
    except ProtocolError as exc:
        assert str(exc) and exc.code in pb.Error.Code.values()
        return
    assert CHECK(hello.resource) is None
    if hello.reachable is not None:
        assert hello.proxy_type.name == "SIDECAR"


@fuzz(400)
@given(data=st.binary(max_size=400))
def test_any_bytes(data: bytes) -> None:
    try:
        msg = pb.DpMessage.FromString(data)
    except Exception as exc:
        assert type(exc).__name__ == "DecodeError", exc
        return
    check(msg)


@fuzz(500)
@given(
    ingress=st.booleans(),
    proxy_type=st.sampled_from([0, 1, 2, 3]),
    mutations=st.lists(MUTATION, max_size=3),
    mesh=st.sampled_from(["default", "", "other", "a..b"]),
    version=st.text(max_size=20),
    reachable=SERVICES,
    reachable_set=st.booleans(),
    raw=st.one_of(st.none(), JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=50)),
)
def test_mutated_hellos(
    ingress: bool,
    proxy_type: int,
    mutations: list[tuple[list[int], str, Any, str]],
    mesh: str,
    version: str,
    reachable: list[str],
    reachable_set: bool,
    raw: bytes | None,
) -> None:
    doc: Any = copy.deepcopy(INGRESS if ingress else DATAPLANE)
    for path, op, value, key in mutations:
        doc = mutate(doc, path, op, value, key)
    resource = raw if raw is not None else json.dumps(doc).encode()
    check(
        pb.DpMessage(
            hello=pb.Hello(
                proxy_type=proxy_type,  # type: ignore[arg-type]
                resource=resource,
                mesh=mesh,
                proxy_version=version,
                reachable_services=reachable,
                reachable_services_set=reachable_set,
            )
        )
    )


def test_a_deeply_nested_resource_is_a_protocol_error() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    check(pb.DpMessage(hello=pb.Hello(proxy_type=pb.SIDECAR, resource=nested, mesh="default")))
