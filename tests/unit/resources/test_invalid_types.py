"""Bad Mesh, Zone, Secret, Dataplane and ZoneIngress bodies; arbitrary input never crashes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.errors import FieldError, ValidationError
from meshfed.resources.types import default_registry

NOT_SUPPORTED = "is not supported by meshfed"


def errors(text: str) -> list[tuple[str, str]]:
    doc = yaml.safe_load(text)
    with pytest.raises(ValidationError) as info:
        resource_from_dict(doc, default_registry())
    return [(e.field, e.reason) for e in info.value.errors]


def test_mesh() -> None:
    got = errors(
        """
type: Mesh
name: m
mtls:
  enabledBackend: ca-3
  skipValidation: true
  backends:
    - name: ca-1
      type: provided
    - name: ca-1
      type: vault
      mode: PERMISSIVE
      dpCert: {rotation: {expiration: 10 years}}
      conf: {caCert: {RSAbits: 1024}}
    - type: builtin
logging: {backends: []}
tracing: {}
metrics: {}
routing: {zoneEgress: true, localityAwareLoadBalancing: "yes"}
meshServices: {mode: Sometimes}
skipCreatingInitialPolicies: ["", MeshTimeout]
"""
    )
    observability = f"{NOT_SUPPORTED}: observability backends are not configured through the Mesh"
    assert got == [
        ("mtls.skipValidation", f"{NOT_SUPPORTED}: CA material is always validated"),
        (
            "mtls.backends[0].type",
            f"provided {NOT_SUPPORTED} yet: only the builtin CA is implemented",
        ),
        ("mtls.backends[1].type", "must be one of builtin"),
        ("mtls.backends[1].mode", f"PERMISSIVE {NOT_SUPPORTED}: sidecars always require mTLS"),
        (
            "mtls.backends[1].dpCert.rotation.expiration",
            'must be a duration such as "30d", "10y", "1h"',
        ),
        ("mtls.backends[1].conf.caCert.RSAbits", "must be an integer between 2048 and 8192"),
        ("mtls.backends[2].name", "is required"),
        ("mtls.backends[1].name", "'ca-1' is already used by another backend"),
        ("mtls.enabledBackend", "must name one of the backends in mtls.backends (ca-1)"),
        ("logging", observability),
        ("tracing", observability),
        ("metrics", observability),
        ("routing.localityAwareLoadBalancing", "must be a boolean (true or false)"),
        ("routing.zoneEgress", f"{NOT_SUPPORTED}: cross-zone traffic goes through zone ingresses"),
        ("meshServices.mode", "must be one of Disabled, Everywhere, ReachableBackends, Exclusive"),
        ("skipCreatingInitialPolicies[0]", "must not be empty"),
    ]


def test_mesh_unknown_top_level_field_and_mesh_key() -> None:
    assert errors("type: Mesh\nname: m\nmesh: default\nmtl: {}\n") == [
        ("mesh", "Mesh is not scoped to a mesh; remove this field"),
        (
            "mtl",
            "unknown field (allowed: mtls, skipCreatingInitialPolicies, networking, routing, "
            "constraints, meshServices, logging, tracing, metrics)",
        ),
    ]


def test_zone_and_secret() -> None:
    assert errors("type: Zone\nname: z\nenabled: 'yes'\nregion: eu\n") == [
        ("enabled", "must be a boolean (true or false)"),
        ("region", "unknown field (allowed: enabled)"),
    ]
    assert errors("type: Secret\nmesh: default\nname: s\n") == [("data", "is required")]
    assert errors("type: Secret\nmesh: default\nname: s\ndata: 'not base64!'\n") == [
        ("data", "must be base64-encoded (standard alphabet)")
    ]
    assert errors("type: Secret\nmesh: default\nname: s\ndata: 12\nvalue: x\n") == [
        ("data", "must be a string"),
        ("value", "unknown field (allowed: data)"),
    ]


def test_dataplane() -> None:
    got = errors(
        """
type: Dataplane
mesh: default
name: dp
networking:
  address: "not an address!"
  advertisedAddress: 10.0.0.1
  inbound:
    - port: 8080
      tags: {kuma.io/service: web}
    - port: 70000
      servicePort: 0
      serviceAddress: "::1"
      tags: {app: web, kuma.io/protocol: kafka}
      health: {ready: "yes"}
      state: Ready
  outbound:
    - port: 33033
      tags: {kuma.io/service: ""}
    - tags: {kuma.io/service: backend}
  admin: {port: 0}
  transparentProxying: {redirectPortInbound: 15006}
"""
    )
    assert got == [
        ("networking.address", "must be an IP address or a hostname"),
        ("networking.inbound[1].port", "must be an integer between 1 and 65535"),
        ("networking.inbound[1].servicePort", "must be an integer between 1 and 65535"),
        ("networking.inbound[1].tags", "must contain the 'kuma.io/service' tag"),
        ("networking.inbound[1].tags['kuma.io/protocol']", "must be one of tcp, http, http2, grpc"),
        ("networking.inbound[1].health.ready", "must be a boolean (true or false)"),
        (
            "networking.inbound[1].state",
            "unknown field (allowed: name, port, servicePort, serviceAddress, address, tags, "
            "health, serviceProbe)",
        ),
        (
            "networking.outbound[0].tags['kuma.io/service']",
            "must be non-empty and consist of alphanumeric characters, '.', '-', '_', ':'",
        ),
        ("networking.outbound[1].port", "is required"),
        ("networking.admin.port", "must be an integer between 1 and 65535"),
        (
            "networking.transparentProxying",
            f"{NOT_SUPPORTED}: sidecars listen on VIPs from the zone's DNS instead",
        ),
    ]


def test_dataplane_needs_networking_and_an_inbound() -> None:
    assert errors("type: Dataplane\nmesh: default\nname: dp\n") == [("networking", "is required")]
    assert errors("type: Dataplane\nmesh: default\nname: dp\nnetworking: {inbound: []}\n") == [
        ("networking.address", "is required"),
        ("networking.inbound", "must have at least 1 item"),
    ]
    gateway = errors(
        "type: Dataplane\nmesh: default\nname: gw\n"
        "networking: {address: 10.0.0.1, gateway: {tags: {kuma.io/service: edge}}}\n"
    )
    assert gateway == [
        ("networking.gateway", f"{NOT_SUPPORTED}: there are no built-in gateways"),
    ]


def test_zone_ingress() -> None:
    got = errors(
        """
type: ZoneIngress
name: zi
zone: 7
networking:
  address: 127.0.0.1
  advertisedAddress: 10.0.0.1
availableServices:
  - tags: {version: v1}
    instances: -1
    mesh: Default
"""
    )
    assert got == [
        ("zone", "must be a string"),
        ("networking.port", "is required"),
        ("networking.advertisedPort", "is required when advertisedAddress is set"),
        ("availableServices[0].tags", "must contain the 'kuma.io/service' tag"),
        ("availableServices[0].instances", "must be an integer between 0 and 4294967295"),
        (
            "availableServices[0].mesh",
            "must consist of lower case alphanumeric characters, '-', '.' and '_'",
        ),
    ]


def test_insights_accept_any_status_fields() -> None:
    for kind, mesh in (
        ("ZoneInsight", ""),
        ("DataplaneInsight", "mesh: default\n"),
        ("ZoneIngressInsight", ""),
    ):
        doc = yaml.safe_load(f"type: {kind}\n{mesh}name: x\nanything: {{nested: [1, 2]}}\n")
        assert resource_from_dict(doc, default_registry()).spec == {"anything": {"nested": [1, 2]}}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "name",
                    "to",
                    "from",
                    "rules",
                    "default",
                    "targetRef",
                    "networking",
                    "inbound",
                    "port",
                    "tags",
                    "mtls",
                    "backends",
                    "http",
                    "tcp",
                    "grpc",
                    "x",
                    "type",
                    "data",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(default_registry().names()),
    st.dictionaries(st.text(max_size=8), JSON, max_size=5),
    JSON,
)
def test_validators_never_raise_on_arbitrary_input(
    type_name: str, body: dict[str, Any], spec: Any
) -> None:
    desc = default_registry().get(type_name)
    prefix = "spec" if desc.spec_wrapped else ""
    for candidate in (
        body,
        {"spec": spec} if desc.spec_wrapped else body,
        {"networking": spec},
        {"to": spec},
    ):
        result = desc.validate(candidate, prefix)
        assert all(isinstance(e, FieldError) for e in result)
    doc = {"type": type_name, "name": "n", "mesh": "default", "spec": spec, **body}
    try:
        resource_from_dict(doc, default_registry())
    except ValidationError as exc:
        assert exc.errors
