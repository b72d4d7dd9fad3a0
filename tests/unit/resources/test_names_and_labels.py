"""Kuma's rules for names, labels, Dataplane addresses and service names, checked at the edge:
each refusal names its field, and what the control planes write themselves still passes."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.kds.naming import outgoing_from_zone, stored_at_global, zone_resource_name
from meshfed.kds.receive import validator
from meshfed.resources.codec import check_labels, check_name, resource_from_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.model import Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.common import service_name_problem

REG = default_registry()
SVC = "kuma.io/service"


def refused_fields(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        resource_from_dict(doc, REG)
    return {e.field: e.reason for e in info.value.errors}


def dataplane(name: str = "web-1", address: str = "127.0.0.1", service: str = "web") -> Any:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {"address": address, "inbound": [{"port": 8080, "tags": {SVC: service}}]},
    }


# ---- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["web", "web-1", "a.b", "backend.1a2b3c4d5e", "0", "a" * 253, "x" * 63 + ".y"]
)
def test_rfc_1123_subdomains_are_names(name: str) -> None:
    assert check_name(name, "name") == []


@pytest.mark.parametrize(
    "name",
    ["a..b", "a.-b", "a-.b", ".a", "a.", "-a", "a-", "a_b", "A", "a b", "a" * 254, "é", "a\n"],
)
def test_what_kuma_refuses_is_not_a_name(name: str) -> None:
    [error] = check_name(name, "name")
    assert error.field == "name"
    assert "RFC 1123 subdomain" in error.reason


def test_a_refused_name_is_named_in_the_document_error() -> None:
    assert "name" in refused_fields(dataplane(name="a..b"))
    assert "mesh" in refused_fields({**dataplane(), "mesh": "a_b"})


@pytest.mark.parametrize("name", ["web", "a" * 253, "a." * 120 + "b", "x" * 63 + "-" + "y" * 189])
def test_zone_originated_names_stay_names(name: str) -> None:
    out = zone_resource_name(name, "default", "zone-1")
    assert check_name(out, "name") == []


# ---- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("team", ""),
        ("team", "a"),
        ("app.kubernetes.io/name", "My_App.v1-2"),
        ("k8s.kuma.io/namespace", "kuma-demo"),
        ("meshfed.io/ca-backend", "ca-1"),
        ("x" * 63, "v" * 63),
        ("a" * 253 + "/" + "b" * 63, "ok"),
    ],
)
def test_kubernetes_label_rules_accept(key: str, value: str) -> None:
    assert check_labels({key: value}) == []


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("team", "a\nb\u0000", "a valid label must be an empty string"),
        ("team", "bad value!", "a valid label must be an empty string"),
        ("team", "-a", "a valid label must be an empty string"),
        ("team", "v" * 64, "no more than 63 characters"),
        ("bad key!", "v", "name part must consist of"),
        ("", "v", "name part must be non-empty"),
        ("x" * 64, "v", "name part must be no more than 63 characters"),
        ("Example.com/a", "v", "prefix part"),
        ("a..b/c", "v", "prefix part"),
        ("/a", "v", "prefix part"),
        ("a/", "v", "name part must be non-empty"),
        ("kuma.io/display-name", "a..b", "holds a resource name"),
    ],
)
def test_kubernetes_label_rules_refuse_naming_the_label(key: str, value: str, reason: str) -> None:
    errors = check_labels({key: value})
    assert errors, (key, value)
    assert {e.field for e in errors} == {f"labels[{key!r}]"}
    assert any(reason in e.reason for e in errors), errors


def test_a_bad_label_is_refused_in_a_document() -> None:
    doc = {**dataplane(), "labels": {"team": "a\nb\u0000", "ok": "fine"}}
    assert list(refused_fields(doc)) == ["labels['team']"]


def test_system_labels_of_synced_resources_pass_the_receivers_validator() -> None:
    """kuma.io/origin, kuma.io/zone, kuma.io/display-name as the control planes set them, also
    for a name longer than a label value may be (display-name holds a name)."""
    check = validator(REG)
    for name in ("web-1", "a" * 253):
        local = resource_from_dict(dataplane(name=name), REG)
        assert check(outgoing_from_zone(local, "zone-1")) is None
        at_global = stored_at_global(outgoing_from_zone(local, "zone-1"), "zone-1")
        assert check(at_global) is None
    secret = Resource(
        "Secret",
        Meta(
            "default.ca-builtin-cert-ca-1",
            "default",
            {"kuma.io/origin": "global", "meshfed.io/ca-backend": "ca-1"},
        ),
        {"data": "YQ=="},
    )
    assert check(secret) is None


# ---- Dataplane addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"])
def test_undialable_dataplane_addresses_are_refused(address: str) -> None:
    reason = refused_fields(dataplane(address=address))["networking.address"]
    assert address in reason and "dial" in reason
    doc = dataplane()
    doc["networking"]["inbound"][0]["address"] = address
    doc["networking"]["advertisedAddress"] = address
    assert {"networking.inbound[0].address", "networking.advertisedAddress"} <= set(
        refused_fields(doc)
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "::1", "fd00::5", "web.local"])
def test_dialable_dataplane_addresses_pass(address: str) -> None:
    resource_from_dict(dataplane(address=address), REG)


# ---- service names -----------------------------------------------------------------------------


LONG_OK = "_".join(["s" * 60] * 4)  # 243 characters, each DNS part 60


@pytest.mark.parametrize("service", ["web", "backend_kuma-demo_svc_8080", "a.b", LONG_OK])
def test_service_names_that_can_be_vip_keys_and_dns_names_pass(service: str) -> None:
    assert service_name_problem(service) is None
    resource_from_dict(dataplane(service=service), REG)


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ("s" * 300, "at most 253 characters"),
        ("a_" * 127, "at most 253 characters"),
        ("s" * 64, "at most 63 characters"),
        ("a..b", "two of them in a row"),
        ("_a", "start or end"),
    ],
)
def test_service_names_that_cannot_be_vip_keys_or_dns_names_are_refused(
    service: str, reason: str
) -> None:
    field = f"networking.inbound[0].tags[{SVC!r}]"
    assert reason in refused_fields(dataplane(service=service))[field]
    ingress = {
        "type": "ZoneIngress",
        "name": "ingress-1",
        "networking": {"address": "127.0.0.1", "port": 10001},
        "availableServices": [{"tags": {SVC: service}, "instances": 1, "mesh": "default"}],
    }
    assert reason in refused_fields(ingress)[f"availableServices[0].tags[{SVC!r}]"]


@pytest.mark.parametrize("backend", ["CA_1", "ca 1", "a" * 64, "-ca"])
def test_ca_backend_names_must_fit_the_secret_names_and_labels_they_make(backend: str) -> None:
    doc = {
        "type": "Mesh",
        "name": "default",
        "mtls": {"enabledBackend": backend, "backends": [{"name": backend, "type": "builtin"}]},
    }
    assert "mtls.backends[0].name" in refused_fields(doc)


def test_the_shadow_effect_label_is_refused_not_ignored() -> None:
    doc = {
        "type": "MeshTimeout",
        "mesh": "default",
        "name": "preview",
        "labels": {"kuma.io/effect": "shadow"},
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "20s"}}],
        },
    }
    with pytest.raises(ValidationError) as exc:
        resource_from_dict(doc, default_registry())
    assert [(e.field, e.reason) for e in exc.value.errors] == [
        (
            "labels['kuma.io/effect']",
            "not supported: meshfed has no shadow mode, so the policy would take effect",
        )
    ]
    del doc["labels"]
    assert resource_from_dict(doc, default_registry()).meta.name == "preview"


# ---- ZoneIngress addresses (issue 16: 0.0.0.0 was accepted and advertised to other zones) ----


def zone_ingress(**networking: object) -> dict[str, object]:
    return {"type": "ZoneIngress", "name": "zi", "networking": {"port": 10001, **networking}}


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1"])
def test_an_undialable_zone_ingress_address_is_refused(address: str) -> None:
    reason = refused_fields(zone_ingress(address=address))["networking.address"]
    assert address in reason and "dial" in reason
    doc = zone_ingress(address="10.0.0.1", advertisedAddress=address, advertisedPort=1)
    assert "networking.advertisedAddress" in refused_fields(doc)


def test_a_zone_ingress_may_listen_on_any_address_behind_an_advertised_one() -> None:
    resource_from_dict(
        zone_ingress(address="0.0.0.0", advertisedAddress="203.0.113.7", advertisedPort=443), REG
    )
    resource_from_dict(zone_ingress(address="10.0.0.1"), REG)
