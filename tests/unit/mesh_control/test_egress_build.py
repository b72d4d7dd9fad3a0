"""zone-cp's side of MeshExternalService (issue 17): the egress's config (who may call, what
it presents, how it reaches the service) and the sidecars' outbounds to the egress. Pure."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from meshfed.dpconfig.catalog import build_catalog
from meshfed.dpconfig.external import external_vip_key
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.policies import outbound_policies
from meshfed.dpconfig.protocol import ProxyType
from meshfed.dpconfig.sni import encode_sni
from meshfed.pki.ca import ca_to_secret_data, create_mesh_ca
from meshfed.pki.ca_names import cert_secret_name, key_secret_name
from meshfed.policy.permissions import Action
from meshfed.policy.rules import match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import (
    dataplane,
    frm,
    inbound,
    mesh_resource,
    mtp,
    resource,
    svc,
    to,
)
from zone_cp.certs import CertIssuer
from zone_cp.dpbuild import BuildInputs, build_config
from zone_cp.egress_build import (
    SourceError,
    build_egress_config,
    egress_identity,
    external_permissions,
    read_source,
)
from zone_cp.external_outbounds import with_external_outbounds, with_passthrough

ZONE = "zone-1"
CA = create_mesh_ca("default")
EXT_CA_PEM = create_mesh_ca("ext").cert_pem


def secret(name: str, data: str) -> Resource:
    return resource({"type": "Secret", "name": name, "mesh": "default", "data": data})


def ca_secrets() -> list[Resource]:
    data = ca_to_secret_data(CA)
    return [
        secret(cert_secret_name("default", "ca-1"), data["cert"]),
        secret(key_secret_name("default", "ca-1"), data["key"]),
    ]


def external(name: str, tls: dict[str, Any] | None = None, port: int = 8080) -> Resource:
    spec: dict[str, Any] = {
        "match": {"port": port, "protocol": "http"},
        "endpoints": [{"address": "api.example.com", "port": 443, "priority": 1}],
    }
    if tls is not None:
        spec["tls"] = tls
    return resource({"type": "MeshExternalService", "name": name, "mesh": "default", "spec": spec})


def egress(name: str = "egress-1") -> Resource:
    return resource(
        {"type": "ZoneEgress", "name": name, "networking": {"address": "127.0.5.1", "port": 10002}}
    )


ONLY_WEB = mtp(
    "web-to-api",
    {"kind": "MeshExternalService", "name": "api"},
    **{"from": [frm(svc("web"), "Allow")]},
)


def test_permissions_target_the_external_service_or_default_to_everyone() -> None:
    open_ = external_permissions([], "api", "default")
    assert open_.evaluate("spiffe://default/anyone").allowed
    assert not open_.evaluate("spiffe://other/anyone").allowed  # another mesh's caller
    only_web = external_permissions([ONLY_WEB], "api", "default")
    assert only_web.evaluate("spiffe://default/web").action is Action.ALLOW
    assert not only_web.evaluate("spiffe://default/intruder").allowed
    # a permission for another external service, or for a sidecar, changes nothing here
    unrelated = mtp("x", svc("api"), **{"from": [frm(svc("nobody"), "Deny")]})
    assert (
        external_permissions([unrelated], "api", "default").evaluate("spiffe://default/web").allowed
    )
    assert (
        external_permissions([ONLY_WEB], "other", "default")
        .evaluate("spiffe://default/intruder")
        .allowed
    )


def test_data_sources_inline_string_and_secret() -> None:
    from meshfed.resources.models.external import DataSource

    text = "-----BEGIN CERTIFICATE-----\nx\n"
    b64 = base64.b64encode(text.encode()).decode()
    secrets = {"ca": secret("ca", b64)}

    def source(**doc: str) -> DataSource:
        return DataSource.model_validate(doc)

    assert read_source(source(inline=b64), secrets, "caCert") == text
    assert read_source(source(inlineString=text), secrets, "caCert") == text
    assert read_source(source(secret="ca"), secrets, "caCert") == text
    assert read_source(None, secrets, "caCert") == ""
    with pytest.raises(SourceError, match="caCert: no Secret 'missing'"):
        read_source(source(secret="missing"), secrets, "caCert")


def test_the_egress_config_has_a_leaf_per_service_and_the_origination() -> None:
    ca_b64 = base64.b64encode(EXT_CA_PEM).decode()
    tls = {
        "enabled": True,
        "version": {"min": "TLS12"},
        "verification": {
            "serverName": "api.example.com",
            "caCert": {"secret": "api-ca"},
            "subjectAltNames": [{"type": "Prefix", "value": "spiffe://ext/"}],
        },
    }
    inputs = BuildInputs.of(
        [mesh_resource()],
        [*ca_secrets(), secret("api-ca", ca_b64)],
        [
            external("api", tls),
            external("plain"),
            external("broken", {"enabled": True, "verification": {"caCert": {"secret": "absent"}}}),
            ONLY_WEB,
        ],
    )
    config = build_egress_config(egress(), ZONE, inputs, CertIssuer(dt.timedelta(hours=1)))
    by_name = {s.name: s for s in config.services}
    assert sorted(by_name) == ["api", "plain"]  # `broken`'s Secret is missing: left out
    api = by_name["api"]
    assert api.sni == encode_sni("api", "default")
    assert "spiffe://default/api" in _uris(api.tls.cert_pem)
    assert api.origin_tls is not None and api.origin_tls.ca_pem == EXT_CA_PEM.decode()
    assert api.origin_tls.min_version == "TLS12" and api.origin_tls.mode == "Secured"
    assert [(e.address, e.port, e.priority) for e in api.endpoints] == [("api.example.com", 443, 1)]
    assert not api.permissions.evaluate("spiffe://default/intruder").allowed
    assert by_name["plain"].origin_tls is None
    assert by_name["plain"].permissions.evaluate("spiffe://default/intruder").allowed
    # without mTLS on the mesh, no external service reaches the egress
    plain = BuildInputs.of([mesh_resource(mtls=False)], [], [external("api")])
    assert build_egress_config(egress(), ZONE, plain, CertIssuer()).services == ()


def _uris(pem: str) -> tuple[str, ...]:
    from meshfed.pki.der import certificate_facts, pem_certificates

    return certificate_facts(pem_certificates(pem)[0]).uris


def sidecar(mtls: bool = True) -> tuple[SidecarConfig, Resource]:
    web = dataplane("web-1", inbound("web", 18000), address="127.0.9.1")
    inputs = BuildInputs.of([mesh_resource(mtls=mtls)], ca_secrets() if mtls else [], [])
    config = build_config(
        ProxyType.SIDECAR,
        web,
        ZONE,
        build_catalog(ZONE, [web], []),
        {},
        inputs,
        CertIssuer(dt.timedelta(hours=1)),
    )
    assert isinstance(config, SidecarConfig)
    return config, web


def test_sidecar_outbounds_go_to_the_egresses_with_the_services_sni_and_policies() -> None:
    config, web = sidecar()
    timeout = resource(
        {
            "type": "MeshTimeout",
            "name": "t",
            "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [to(svc("api"), {"connectionTimeout": "3s"})],
            },
        }
    )
    policies = {
        "MeshExternalService": [external("api"), external("db", port=5432)],
        "MeshTimeout": [timeout],
    }
    vips = {external_vip_key("default", "api"): "127.1.0.7"}  # db has no VIP yet
    out = with_external_outbounds(config, web, ZONE, policies, [egress()], vips, None)
    (api,) = [o for o in out.outbounds if o.service == "api"]
    assert (api.address, api.port, api.protocol) == ("127.1.0.7", 8080, "http")
    assert [(e.address, e.port, e.sni) for e in api.endpoints] == [
        ("127.0.5.1", 10002, encode_sni("api", "default"))
    ]
    assert api.policies.connect_timeout == 3.0
    # a sidecar that lists its reachable services gets only those
    none = with_external_outbounds(config, web, ZONE, policies, [egress()], vips, frozenset())
    assert none.outbounds == config.outbounds
    # no mTLS, no egress: the sidecar could not reach it
    plain, web_plain = sidecar(mtls=False)
    assert (
        with_external_outbounds(plain, web_plain, ZONE, policies, [egress()], vips, None) is plain
    )


def test_a_to_entry_of_kind_mesh_external_service_applies_to_its_outbound_only() -> None:
    config, web = sidecar()
    mes_ref = {"kind": "MeshExternalService", "name": "api"}
    retry = resource(
        {
            "type": "MeshRetry",
            "name": "r",
            "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    to(mes_ref, {"tcp": {"maxConnectAttempt": 4}}),
                    to(
                        {"kind": "MeshExternalService", "name": "db"},
                        {"tcp": {"maxConnectAttempt": 9}},
                    ),
                ],
            },
        }
    )
    policies = {
        "MeshExternalService": [external("api"), external("db", port=5432)],
        "MeshRetry": [retry],
    }
    vips = {
        external_vip_key("default", "api"): "127.1.0.7",
        external_vip_key("default", "db"): "127.1.0.8",
    }
    out = with_external_outbounds(config, web, ZONE, policies, [egress()], vips, None)
    attempts = {o.service: o.policies.max_connect_attempts for o in out.outbounds}
    assert (attempts["api"], attempts["db"]) == (4, 9)
    # a kuma.io/service outbound of the same name is not selected by that kind
    assert outbound_policies({"MeshRetry": match([retry], view_of(web, ZONE))}, "api") == (
        outbound_policies({}, "api")
    )


def test_the_egress_leaves_rotate_like_a_sidecars() -> None:
    now = [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
    issuer = CertIssuer(dt.timedelta(hours=1), clock=lambda: now[0])
    inputs = BuildInputs.of([mesh_resource()], ca_secrets(), [external("api")])
    first = build_egress_config(egress(), ZONE, inputs, issuer).services[0].tls.cert_pem
    due = issuer.first_rotation(egress_identity("egress-1", ""))
    assert due is not None and due < now[0] + dt.timedelta(hours=1)
    assert build_egress_config(egress(), ZONE, inputs, issuer).services[0].tls.cert_pem == first
    now[0] = due
    assert build_egress_config(egress(), ZONE, inputs, issuer).services[0].tls.cert_pem != first


def test_sidecars_get_the_passthrough_of_their_policies_or_mesh() -> None:
    config, web = sidecar()
    by_mesh = with_passthrough(config, web, ZONE, mesh_resource(), {})
    assert by_mesh.passthrough is not None and by_mesh.passthrough.mode == "All"
    policy = resource(
        {
            "type": "MeshPassthrough",
            "name": "p",
            "mesh": "default",
            "spec": {
                "targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": "web"}},
                "default": {
                    "passthroughMode": "Matched",
                    "appendMatch": [{"type": "CIDR", "value": "10.0.0.0/8", "protocol": "tcp"}],
                },
            },
        }
    )
    out = with_passthrough(config, web, ZONE, mesh_resource(), {"MeshPassthrough": [policy]})
    assert out.passthrough is not None and out.passthrough.mode == "Matched"
    assert [m.value for m in out.passthrough.matches] == ["10.0.0.0/8"]
    other = dataplane("db-1", inbound("db", 18001), address="127.0.9.2")
    untouched = with_passthrough(
        config, other, ZONE, mesh_resource(), {"MeshPassthrough": [policy]}
    )
    assert untouched.passthrough is not None and untouched.passthrough.mode == "All"
