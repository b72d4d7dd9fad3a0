"""Config model: JSON round trips, content versions, and clear errors for bad configs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from meshfed.dpconfig.model import (
    ConfigFormatError,
    Endpoint,
    HealthCheck,
    Inbound,
    IngressConfig,
    IngressService,
    LbAlgorithm,
    Locality,
    Outbound,
    OutboundKind,
    OutboundPolicies,
    SidecarConfig,
    Tls,
    content_version,
    encode_config,
)
from meshfed.policy.permissions import Action, MatchType, Permissions, SpiffeMatch

PERMS = Permissions(
    mesh="default",
    default=Action.DENY,
    services={"web": Action.ALLOW, "legacy": Action.ALLOW_WITH_SHADOW_DENY},
    deny=(SpiffeMatch(MatchType.EXACT, "spiffe://default/bad"),),
    allow=(SpiffeMatch(MatchType.PREFIX, "spiffe://default/ops"),),
    sources=("MeshTrafficPermission/a",),
)
CONFIG = SidecarConfig(
    mesh="default",
    zone="zone-1",
    dataplane="web-1",
    identity="spiffe://default/web",
    mtls_enabled=True,
    inbounds=(
        Inbound(
            "api", "127.0.0.2", 18080, "127.0.0.1", 8080, "web", {"kuma.io/service": "web"}, PERMS
        ),
    ),
    outbounds=(
        Outbound(
            service="backend",
            address="127.1.0.1",
            port=8080,
            also_port_80=True,
            endpoints=(
                Endpoint("127.0.0.3", 18080, "zone-1"),
                Endpoint(
                    "127.0.0.9",
                    10001,
                    "zone-2",
                    2,
                    Locality.REMOTE,
                    True,
                    "backend.default.sni.mesh",
                ),
            ),
            policies=OutboundPolicies(
                connect_timeout=1.5,
                idle_timeout=0.0,
                max_connect_attempts=3,
                health_check=HealthCheck(5.0, 1.0, 2, 1),
                max_connections=10,
                load_balancer=LbAlgorithm.LEAST_REQUEST,
                least_request_choices=3,
                locality_aware=False,
                sources=("MeshTimeout/t",),
            ),
        ),
        Outbound(
            service="backend",
            address="127.0.0.1",
            port=9000,
            endpoints=(),
            zone="zone-2",
            kind=OutboundKind.EXPLICIT,
        ),
    ),
    tls=Tls("CERT", "KEY", ("CA1", "CA2"), "2026-03-02T12:00:00Z"),
).stamped()


def test_sidecar_config_round_trips_through_json_text() -> None:
    text = CONFIG.to_bytes()
    assert SidecarConfig.from_json(text) == CONFIG
    assert SidecarConfig.from_json(json.loads(text)) == CONFIG
    assert SidecarConfig.from_json(text.decode()) == CONFIG


def test_version_is_the_hash_of_the_encoded_bytes() -> None:
    encoded = encode_config(CONFIG)
    assert encoded.version == CONFIG.version == content_version(encoded.body)
    assert replace(CONFIG, version="").to_bytes() == encoded.body  # the bytes sent
    assert SidecarConfig.from_json(encoded.body) == replace(CONFIG, version="")
    assert CONFIG.stamped() == CONFIG  # stamping again keeps the version
    moved = replace(CONFIG, zone="zone-9").stamped()
    assert moved.version != CONFIG.version
    again = replace(moved, zone="zone-1").stamped()
    assert again.version == CONFIG.version


def test_equal_configs_encode_to_equal_bytes_whatever_the_dict_order() -> None:
    inbound = CONFIG.inbounds[0]
    tags = {"b": "2", "a": "1"}
    one = replace(CONFIG, inbounds=(replace(inbound, tags=tags),))
    other = replace(CONFIG, inbounds=(replace(inbound, tags=dict(reversed(tags.items()))),))
    assert encode_config(one).body == encode_config(other).body


def test_ingress_config_round_trips_and_indexes_by_sni() -> None:
    cfg = IngressConfig(
        zone="zone-2",
        ingress="ingress-1",
        services=(
            IngressService(
                "default",
                "backend",
                "backend.default.sni.mesh",
                (Endpoint("127.0.0.5", 1, "zone-2"),),
            ),
        ),
    ).stamped()
    assert IngressConfig.from_json(cfg.to_bytes()) == cfg
    assert cfg.by_sni()["backend.default.sni.mesh"].service == "backend"


def test_unknown_fields_are_ignored_and_defaults_apply() -> None:
    body: dict[str, Any] = CONFIG.to_json()
    body["futureField"] = {"x": 1}
    body["outbounds"][1].pop("policies")
    body["outbounds"][1]["endpoints"] = [{"address": "10.0.0.1", "port": 1}]
    cfg = SidecarConfig.from_json(body)
    out = cfg.outbounds[1]
    assert out.policies == OutboundPolicies()
    assert out.endpoints == (Endpoint("10.0.0.1", 1, ""),)


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(CONFIG.to_bytes())
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["mesh"], KeyError, "mesh: is required"),
        (["mtlsEnabled"], "yes", "mtlsEnabled: Expected `bool`, got `str`"),
        (["tls"], None, "tls: is required when mtlsEnabled is true"),
        (["tls", "caPems"], [], "tls.caPems: Expected `array` of length >= 1"),
        (["inbounds"], {}, "inbounds: Expected `array`, got `object`"),
        (["inbounds", 0, "port"], 0, "inbounds[0].port: Expected `int` >= 1"),
        (["inbounds", 0, "port"], True, "inbounds[0].port: Expected `int`, got `bool`"),
        (["inbounds", 0, "tags"], {"a": 1}, "inbounds[0].tags[...]: Expected `str`"),
        (
            ["inbounds", 0, "permissions", "services", "web"],
            "Maybe",
            "inbounds[0].permissions.services[...]: Invalid enum value 'Maybe'",
        ),
        (
            ["inbounds", 0, "permissions", "deny", 0, "type"],
            "Regex",
            "permissions.deny[0].type: Invalid enum value",
        ),
        (["outbounds", 0, "endpoints", 1, "locality"], "far", "endpoints[1].locality"),
        (
            ["outbounds", 0, "endpoints", 1, "sni"],
            KeyError,
            "outbounds[0].endpoints[1].sni: is required when viaIngress is true",
        ),
        (["outbounds", 0, "endpoints", 0], "x", "outbounds[0].endpoints[0]: Expected `object`"),
        (
            ["outbounds", 0, "policies", "idleTimeout"],
            -1,
            "policies.idleTimeout: Expected `float` >= 0.0",
        ),
        (
            ["outbounds", 0, "policies", "connectTimeout"],
            float("inf"),
            "policies.connectTimeout: Expected `float` <=",
        ),
        (
            ["outbounds", 0, "policies", "loadBalancer"],
            "WeightedLeastRequest",
            "policies.loadBalancer: Invalid enum value 'WeightedLeastRequest'",
        ),
        (["outbounds", 0, "policies", "healthCheck", "interval"], "5s", "healthCheck.interval"),
        (["outbounds", 0, "policies", "leastRequestChoices"], 1, "leastRequestChoices"),
        (["outbounds", 1, "kind"], "magic", "outbounds[1].kind: Invalid enum value 'magic'"),
        (["outbounds", 1, "zone"], 5, "outbounds[1].zone: Expected `str | null`"),
    ],
)
def test_bad_configs_name_the_field(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(ConfigFormatError) as info:
        SidecarConfig.from_json(mutate(path, value))
    assert message in str(info.value)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", b"\xff", "[1, 2]", b"1" * 10])
def test_not_a_config_at_all(data: bytes | str) -> None:
    with pytest.raises(ConfigFormatError):
        SidecarConfig.from_json(data)
    with pytest.raises(ConfigFormatError):
        IngressConfig.from_json(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _scramble(value: Any, junk: Any, path: list[int]) -> Any:
    """`value` with the node reached by `path` (child picks, modulo width) replaced by `junk`."""
    if not path or not isinstance(value, dict | list) or not value:
        return junk
    pick, rest = path[0], path[1:]
    if isinstance(value, dict):
        key = sorted(value)[pick % len(value)]
        return {**value, key: _scramble(value[key], junk, rest)}
    i = pick % len(value)
    return [*value[:i], _scramble(value[i], junk, rest), *value[i + 1 :]]


@settings(max_examples=500, deadline=None)
@given(junk=JSON, path=st.lists(st.integers(0, 30), max_size=8))
def test_any_damage_is_a_config_format_error(junk: Any, path: list[int]) -> None:
    damaged = _scramble(CONFIG.to_json(), junk, path)
    try:
        cfg = SidecarConfig.from_json(damaged)
    except ConfigFormatError:
        return  # the only failure allowed
    assert isinstance(cfg, SidecarConfig)


@pytest.mark.parametrize(
    ("match", "where"),
    [
        ({"path": {"type": "RegularExpression", "value": "(x"}}, "match.path.value"),
        ({"headers": [{"name": "a", "type": "RegularExpression", "value": "[b-a]"}]},
         "match.headers[0].value"),
        ({"queryParams": [{"name": "q", "type": "RegularExpression", "value": "*"}]},
         "match.queryParams[0].value"),
    ],
)  # fmt: skip
def test_a_route_regex_the_sidecar_cannot_compile_is_a_bad_config(
    match: dict[str, Any], where: str
) -> None:
    outbound = {"service": "b", "address": "127.0.0.1", "port": 80}
    doc = {
        "mesh": "m",
        "zone": "z",
        "dataplane": "d",
        "identity": "i",
        "mtlsEnabled": False,
        "outbounds": [{**outbound, "httpRules": [{"match": match}]}],
    }
    with pytest.raises(ConfigFormatError) as info:
        SidecarConfig.from_json(doc)
    assert str(info.value).startswith(f"outbounds[0].httpRules[0].{where}: not a regular")
    ok = {"path": {"type": "RegularExpression", "value": "/v[0-9]+"}}
    doc["outbounds"] = [{**outbound, "httpRules": [{"match": ok}]}]
    assert SidecarConfig.from_json(doc).outbounds[0].http_rules[0].match.path is not None
