"""DataplaneConfig stream messages: hellos checked, configs carried intact, errors clear."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.model import (
    ConfigFormatError,
    Endpoint,
    IngressConfig,
    IngressService,
    SidecarConfig,
    encode_config,
)
from meshfed.dpconfig.protocol import (
    ProtocolError,
    ProxyType,
    ack_message,
    config_message,
    error_message,
    hello_message,
    nack_message,
    parse_hello,
    parse_ingress_config,
    parse_sidecar_config,
)
from tests.unit.dpconfig.test_model import CONFIG as SIDECAR

DATAPLANE: dict[str, Any] = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {
        "address": "127.0.0.2",
        "inbound": [{"port": 18000, "servicePort": 3000, "tags": {"kuma.io/service": "web"}}],
    },
}
INGRESS: dict[str, Any] = {
    "type": "ZoneIngress",
    "name": "ingress-1",
    "networking": {"address": "127.0.0.3", "port": 10001},
}


def roundtrip(msg: pb.DpMessage) -> pb.DpMessage:
    """Through the wire format, as the server would receive it."""
    return pb.DpMessage.FromString(msg.SerializeToString())


def test_sidecar_hello_round_trips() -> None:
    hello = parse_hello(roundtrip(hello_message(ProxyType.SIDECAR, DATAPLANE, proxy_version="1.2")))
    assert hello.proxy_type is ProxyType.SIDECAR
    assert hello.proxy_version == "1.2"
    assert (hello.resource.type, hello.resource.mesh, hello.resource.name) == (
        "Dataplane",
        "default",
        "web-1",
    )
    assert hello.resource.spec == {"networking": DATAPLANE["networking"]}


def test_ingress_hello_round_trips() -> None:
    hello = parse_hello(roundtrip(hello_message(ProxyType.INGRESS, INGRESS)))
    assert hello.proxy_type is ProxyType.INGRESS
    assert (hello.resource.type, hello.resource.name, hello.resource.mesh) == (
        "ZoneIngress",
        "ingress-1",
        "",
    )


def raw_hello(**fields: Any) -> pb.DpMessage:
    base: dict[str, Any] = {
        "proxy_type": pb.SIDECAR,
        "resource": json.dumps(DATAPLANE).encode(),
        "mesh": "default",
    }
    base.update(fields)
    return pb.DpMessage(hello=pb.Hello(**base))


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (pb.DpMessage(ack=pb.Ack(version="x")), "first message of a stream must be a Hello"),
        (pb.DpMessage(), "first message of a stream must be a Hello"),
        (
            raw_hello(proxy_type=pb.PROXY_TYPE_UNSPECIFIED),
            "proxy_type must be SIDECAR, INGRESS or EGRESS",
        ),
        (raw_hello(proxy_type=7), "proxy_type must be SIDECAR, INGRESS or EGRESS"),
        (raw_hello(resource=b"{nope"), "Hello.resource is not valid JSON"),
        (raw_hello(resource=b"\xff\xfe"), "Hello.resource is not valid JSON"),
        (raw_hello(resource=b"[]"), "not a valid Dataplane: a resource must be a JSON/YAML object"),
        (
            raw_hello(resource=json.dumps(INGRESS).encode()),
            "not a valid Dataplane: type: must be 'Dataplane'",
        ),
        (
            raw_hello(resource=json.dumps({**DATAPLANE, "networking": {}}).encode()),
            "networking.address: ",
        ),
        (  # registration refuses what the REST API refuses, with the same validators
            raw_hello(
                resource=json.dumps(
                    {**DATAPLANE, "networking": {**DATAPLANE["networking"], "address": "0.0.0.0"}}
                ).encode()
            ),
            "networking.address: must be an address other proxies can dial",
        ),
        (
            raw_hello(
                resource=json.dumps(
                    {
                        **DATAPLANE,
                        "networking": {
                            "address": "127.0.0.2",
                            "inbound": [{"port": 1, "tags": {"kuma.io/service": "s" * 300}}],
                        },
                    }
                ).encode()
            ),
            "networking.inbound[0].tags['kuma.io/service']: must be at most 253 characters",
        ),
        (raw_hello(mesh="other"), "Hello.mesh 'other' differs from the Dataplane's mesh 'default'"),
        (
            raw_hello(proxy_type=pb.INGRESS, resource=json.dumps(INGRESS).encode()),
            "Hello.mesh must be empty for an INGRESS",
        ),
    ],
)
def test_bad_hellos_are_refused_with_a_reason(msg: pb.DpMessage, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_hello(msg)
    assert message in str(info.value)
    assert info.value.code == pb.Error.BAD_REQUEST


CONFIG = IngressConfig(
    zone="zone-2",
    ingress="ingress-1",
    services=(
        IngressService(
            "default", "backend", "backend.default.sni.mesh", (Endpoint("127.0.0.5", 1, "zone-2"),)
        ),
    ),
).stamped()


def test_configs_travel_intact() -> None:
    wire = pb.CpMessage.FromString(config_message(encode_config(CONFIG)).SerializeToString())
    assert wire.config.version == CONFIG.version
    assert parse_ingress_config(wire) == CONFIG


def test_config_problems_are_format_errors_to_nack() -> None:
    with pytest.raises(ConfigFormatError, match="not a Config message"):
        parse_sidecar_config(error_message(pb.Error.INTERNAL, "x"))
    tampered = config_message(encode_config(CONFIG))
    tampered.config.version = "0000"
    with pytest.raises(ConfigFormatError, match="differs from the body's hash"):
        parse_ingress_config(tampered)
    with pytest.raises(ConfigFormatError):
        parse_sidecar_config(
            config_message(encode_config(CONFIG))
        )  # an ingress config is no sidecar config
    versioned = pb.CpMessage(config=pb.Config(version=CONFIG.version, json=CONFIG.to_bytes()))
    with pytest.raises(ConfigFormatError, match="body's version must be empty"):
        parse_ingress_config(versioned)
    garbage = pb.CpMessage(config=pb.Config(version="v", json=b"\x00"))
    with pytest.raises(ConfigFormatError, match="not valid JSON"):
        parse_sidecar_config(garbage)


def test_acks_nacks_and_errors() -> None:
    assert ack_message("v1").ack.version == "v1"
    nack = nack_message("v2", "tls: is required")
    assert (nack.nack.version, nack.nack.error) == ("v2", "tls: is required")
    err = error_message(pb.Error.REGISTRATION_REFUSED, "mesh 'x' does not exist", fatal=True)
    assert err.WhichOneof("message") == "error"
    assert (err.error.code, err.error.message, err.error.fatal) == (
        pb.Error.REGISTRATION_REFUSED,
        "mesh 'x' does not exist",
        True,
    )


def test_sidecar_config_is_accepted_by_the_sidecar_parser() -> None:
    parsed = parse_sidecar_config(config_message(encode_config(SIDECAR)))
    assert isinstance(parsed, SidecarConfig) and parsed == SIDECAR
