"""MeshExternalService hostnames from HostnameGenerators (issue 17): Kuma's default
`{{ .DisplayName }}.extsvc.mesh.local` selecting `meshExternalService`, answered with the
service's VIP under its `extsvc` key; a generator for another kind does not name it."""

from __future__ import annotations

from meshfed.bootstrap import DEFAULT_HOSTNAME_GENERATORS
from meshfed.dpconfig.external import external_vip_key
from meshfed.resources.model import Meta, Resource
from zone_cp.hostnames import MESH_EXTERNAL_SERVICE, Claim, hostnames

ZONE = "zone-1"


def default_generators() -> list[Resource]:
    return [
        Resource(
            "HostnameGenerator",
            Meta(name=name, labels={"kuma.io/origin": "global"}),
            {"selector": {kind: {"matchLabels": labels}}, "template": template},
        )
        for name, kind, template, labels in DEFAULT_HOSTNAME_GENERATORS
    ]


def external(name: str, origin: str = "global") -> Resource:
    spec = {"match": {"type": "HostnameGenerator", "port": 80, "protocol": "http"}}
    labels = {"kuma.io/origin": origin}
    return Resource("MeshExternalService", Meta(name=name, mesh="default", labels=labels), spec)


def test_kumas_default_names_a_synced_external_service() -> None:
    vips = {external_vip_key("default", "httpbin"): "127.1.0.7"}
    out = hostnames(
        ZONE, default_generators(), [(MESH_EXTERNAL_SERVICE, external("httpbin"))], vips
    )
    assert out.records == {"httpbin.extsvc.mesh.local": "127.1.0.7"}
    claims = out.addresses[(MESH_EXTERNAL_SERVICE, "default", "httpbin")]
    assert claims == [Claim("httpbin.extsvc.mesh.local", "synced-mesh-external-service")]


def test_no_vip_no_name_and_the_zone_is_not_a_template_value() -> None:
    g = Resource(
        "HostnameGenerator",
        Meta(name="by-zone"),
        {
            "selector": {"meshExternalService": {"matchLabels": {}}},
            "template": "{{ .DisplayName }}.{{ .Zone }}.mesh.local",
        },
    )
    vips = {external_vip_key("default", "httpbin"): "127.1.0.7"}
    services = [
        (MESH_EXTERNAL_SERVICE, external("httpbin")),
        (MESH_EXTERNAL_SERVICE, external("db")),
    ]
    # an external service belongs to no zone: `.Zone` is empty, so no hostname (as Kuma)
    out = hostnames(ZONE, [g], services, vips)
    assert out.records == {}


def test_a_mesh_service_generator_does_not_select_it_and_a_taken_name_is_a_conflict() -> None:
    only_ms = [g for g in default_generators() if "meshExternalService" not in g.spec["selector"]]
    vips = {external_vip_key("default", "httpbin"): "127.1.0.7"}
    assert (
        hostnames(ZONE, only_ms, [(MESH_EXTERNAL_SERVICE, external("httpbin"))], vips).records == {}
    )
    taken = {"httpbin.extsvc.mesh.local": "127.1.0.1"}
    out = hostnames(
        ZONE, default_generators(), [(MESH_EXTERNAL_SERVICE, external("httpbin"))], vips, taken
    )
    assert out.records == {}
    [refusal] = out.refusals[(MESH_EXTERNAL_SERVICE, "default", "httpbin")]
    assert refusal.reason == "Conflict"
