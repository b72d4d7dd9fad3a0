"""mesh-dp checks its reachable services at start with the rules zone-cp applies to a Hello,
and sends them in the Hello as given (unset stays unset)."""

from __future__ import annotations

import pytest

from mesh_dp.dataplane import DataplaneError, build_dataplane, load_document
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_hello

DOC = """
type: Dataplane
name: web-1
networking:
  address: 127.0.1.10
  inbound: [{port: 18000, servicePort: 3000, tags: {kuma.io/service: web}}]
  transparentProxying: {reachableServices: %s}
"""


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("['back end']", "reachable service [0] 'back end' is not a service name"),
        ("[backend, 'a/b']", "'a/b' is not a service name"),
        (f"[{'x' * 254}]", "longer than 253 characters"),
    ],
)
def test_names_zone_cp_would_refuse_fail_at_start(names: str, expected: str) -> None:
    with pytest.raises(DataplaneError) as caught:
        build_dataplane(document=load_document(DOC % names, "dp.yaml"))
    assert "reachableServices, --reachable-services): " in str(caught.value)
    assert expected in str(caught.value)


def test_a_bad_flag_value_fails_too() -> None:
    with pytest.raises(DataplaneError, match="'a/b' is not a service name"):
        build_dataplane(address="127.0.0.5", inbounds=["18080:web"], reachable=frozenset({"a/b"}))


@pytest.mark.parametrize(
    ("doc_names", "flag", "expected"),
    [
        ("[backend]", None, frozenset({"backend"})),
        ("[]", None, frozenset()),
        ("[backend]", frozenset({"redis"}), frozenset({"backend", "redis"})),
    ],
)
def test_the_hello_carries_them(
    doc_names: str, flag: frozenset[str] | None, expected: frozenset[str]
) -> None:
    spec = build_dataplane(document=load_document(DOC % doc_names, "dp.yaml"), reachable=flag)
    msg = hello_message(ProxyType.SIDECAR, spec.document, reachable=spec.reachable)
    assert parse_hello(msg).reachable == expected


def test_unset_stays_unset() -> None:
    spec = build_dataplane(address="127.0.0.5", inbounds=["18080:web"])
    msg = hello_message(ProxyType.SIDECAR, spec.document, reachable=spec.reachable)
    assert not msg.hello.reachable_services_set
    assert parse_hello(msg).reachable is None
