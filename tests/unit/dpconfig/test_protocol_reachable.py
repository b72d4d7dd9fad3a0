"""A sidecar's reachable services in its Hello: unset, set, set to none, and refused input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.protocol import (
    MAX_REACHABLE_SERVICES,
    ProtocolError,
    ProxyType,
    hello_message,
    parse_hello,
    reachable_problem,
)
from tests.unit.dpconfig.test_protocol import DATAPLANE, INGRESS, roundtrip


def test_unset_means_every_service() -> None:
    msg = hello_message(ProxyType.SIDECAR, DATAPLANE)
    assert not msg.hello.reachable_services_set
    assert parse_hello(roundtrip(msg)).reachable is None


def test_set_and_set_to_none_are_told_apart() -> None:
    hello = parse_hello(
        roundtrip(hello_message(ProxyType.SIDECAR, DATAPLANE, reachable={"redis", "backend"}))
    )
    assert hello.reachable == frozenset({"backend", "redis"})
    nothing = parse_hello(roundtrip(hello_message(ProxyType.SIDECAR, DATAPLANE, reachable=())))
    assert nothing.reachable == frozenset()


def test_an_older_proxy_without_the_fields_gets_every_service() -> None:
    """What a Hello from before these fields looks like on the wire."""
    old = pb.Hello(proxy_type=pb.SIDECAR, resource=json.dumps(DATAPLANE).encode(), mesh="default")
    msg = pb.DpMessage.FromString(pb.DpMessage(hello=old).SerializeToString())
    assert parse_hello(msg).reachable is None


def raw(names: list[str], *, set_: bool = True, kind: Any = pb.SIDECAR) -> pb.DpMessage:
    resource = DATAPLANE if kind == pb.SIDECAR else INGRESS
    return pb.DpMessage(
        hello=pb.Hello(
            proxy_type=kind,
            resource=json.dumps(resource).encode(),
            mesh="default" if kind == pb.SIDECAR else "",
            reachable_services=names,
            reachable_services_set=set_,
        )
    )


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (raw(["backend", ""]), "reachable service [1] is empty"),
        (raw(["x" * 254]), "longer than 253 characters"),
        (raw(["back end"]), "'back end' is not a service name"),
        (raw(["a/b"]), "'a/b' is not a service name"),
        (raw([f"s{i}" for i in range(MAX_REACHABLE_SERVICES + 1)]), "more than the 4096"),
        (raw(["backend"], set_=False), "reachable_services_set is false"),
        (raw(["backend"], kind=pb.INGRESS), "for a SIDECAR only"),
        (raw([], kind=pb.INGRESS), "for a SIDECAR only"),
    ],
)
def test_bad_reachable_services_are_refused(msg: pb.DpMessage, expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_hello(roundtrip(msg))
    assert caught.value.code == pb.Error.BAD_REQUEST
    assert expected in str(caught.value)
    assert str(caught.value).startswith("Hello.reachable_services")


def test_the_limits_themselves_are_accepted() -> None:
    names = [f"s{i}" for i in range(MAX_REACHABLE_SERVICES)]
    assert reachable_problem(names) is None
    assert reachable_problem(["x" * 253, "backend_kuma-demo_svc_8080", "a.b:c"]) is None
    assert parse_hello(roundtrip(raw(names))).reachable == frozenset(names)
