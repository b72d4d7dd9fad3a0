"""The egress's routing table: contexts built per service, unusable material named, and the
order endpoints are tried in. Pure (the data path is in tests/integration/test_zone_egress.py)."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.dpconfig.egress import EgressConfig
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.leaf import issue_leaf
from zone_egress.server import compile_routes

CA = create_mesh_ca("default")
LEAF = issue_leaf(CA, "api")


def service(name: str, endpoints: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "mesh": "default",
        "name": name,
        "sni": f"{name}.default.sni.mesh",
        "tls": {
            "certPem": LEAF.cert_pem.decode(),
            "keyPem": LEAF.key_pem.decode(),
            "caPems": [CA.cert_pem.decode()],
            "expiresAt": "2099-01-01T00:00:00Z",
        },
        "permissions": {"mesh": "default"},
        "endpoints": endpoints,
        **extra,
    }


def config(*services: dict[str, Any]) -> EgressConfig:
    return EgressConfig.from_json({"zone": "z", "egress": "e", "services": list(services)})


def test_endpoints_by_priority_then_round_robin_within_one() -> None:
    eps = [
        {"address": "10.0.0.3", "port": 1, "priority": 1},
        {"address": "10.0.0.1", "port": 1},
        {"address": "10.0.0.2", "port": 1},
    ]
    route = compile_routes(config(service("api", eps)))["api.default.sni.mesh"]
    orders = [[e.address for e in route.order()] for _ in range(3)]
    assert orders == [
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        ["10.0.0.2", "10.0.0.1", "10.0.0.3"],
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    ]


def test_unusable_material_is_refused_naming_the_service() -> None:
    bad_key = service("api", [{"address": "10.0.0.1", "port": 1}])
    bad_key["tls"]["keyPem"] = issue_leaf(CA, "api").key_pem.decode()  # another key
    with pytest.raises(ConfigFormatError, match=r"services\[0\] \(default/api\)\.tls"):
        compile_routes(config(bad_key))
    bad_origin = service(
        "api", [{"address": "10.0.0.1", "port": 1}], originTls={"caPem": "not a certificate"}
    )
    with pytest.raises(ConfigFormatError, match=r"originTls: caCert"):
        compile_routes(config(bad_origin))
    with pytest.raises(ConfigFormatError, match="endpoints: must have at least 1 item"):
        compile_routes(config(service("api", [])))
