"""MeshExternalService's model: Kuma's documented examples pass, each mistake is one error at
its path, and what the egress does not do is refused naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry

FIXTURES = Path(__file__).parents[3] / "fixtures" / "kuma-docs" / "meshexternalservice"


def errors_of(spec: dict[str, Any]) -> dict[str, str]:
    doc = {"type": "MeshExternalService", "name": "x", "mesh": "default", "spec": spec}
    try:
        resource_from_dict(doc, default_registry())
    except ValidationError as exc:
        return {e.field: e.reason for e in exc.errors}
    return {}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_kumas_documented_examples_are_valid(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert errors_of(doc["spec"]) == {}


def test_an_extension_is_refused_naming_it() -> None:
    errors = errors_of({"match": {"port": 80}, "extension": {"type": "x"}})
    assert list(errors) == ["spec.extension"]
    assert "not supported" in errors["spec.extension"]


def test_endpoints_are_required_and_ports_follow_the_address_form() -> None:
    assert errors_of({"match": {"port": 80}}) == {"spec.endpoints": "must have at least 1 item"}
    errors = errors_of(
        {
            "match": {"port": 80, "protocol": "udp"},
            "endpoints": [{"address": "unix:///run/a.sock", "port": 3}, {"address": "a.com"}],
        }
    )
    assert errors == {
        "spec.match.protocol": "must be one of tcp, grpc, http, http2",
        "spec.endpoints[0].port": "must not be set for a unix socket address",
        "spec.endpoints[1].port": "is required",
    }
    assert "spec.endpoints[0].address" in errors_of(
        {"match": {"port": 80}, "endpoints": [{"address": "unix://relative", "port": 1}]}
    )


def test_tls_mistakes_each_at_its_path() -> None:
    errors = errors_of(
        {
            "match": {"port": 80},
            "endpoints": [{"address": "x.com", "port": 1}],
            "tls": {
                "version": {"min": "TLS13", "max": "TLS12"},
                "verification": {
                    "mode": "SkipCA",
                    "clientCert": {"inline": "!!"},
                    "caCert": {"inline": "dGVzdA==", "secret": "ca"},
                    "subjectAltNames": [{"type": "Regex", "value": "a"}],
                },
            },
        }
    )
    v = "spec.tls.verification"
    assert set(errors) == {
        "spec.tls.version.min",
        f"{v}.mode",
        f"{v}.clientCert.inline",
        f"{v}.clientKey",
        f"{v}.caCert",
        f"{v}.subjectAltNames[0].type",
    }
    assert errors[f"{v}.mode"].startswith("SkipCA is not supported by meshfed")
    assert errors[f"{v}.clientKey"] == "is required when clientCert is set"
