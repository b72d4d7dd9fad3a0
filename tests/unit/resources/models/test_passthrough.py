"""MeshPassthrough's model: Kuma's documented examples pass; Kuma's own rules refuse the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry

FIXTURES = Path(__file__).parents[3] / "fixtures" / "kuma-docs" / "meshpassthrough"


def errors_of(default: dict[str, Any]) -> dict[str, str]:
    doc = {
        "type": "MeshPassthrough",
        "name": "x",
        "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "default": default},
    }
    try:
        resource_from_dict(doc, default_registry())
    except ValidationError as exc:
        return {e.field: e.reason for e in exc.errors}
    return {}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_kumas_documented_examples_are_valid(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    resource_from_dict(doc, default_registry())


def test_kumas_rules_on_match_entries() -> None:
    at = "spec.default.appendMatch"
    errors = errors_of(
        {
            "passthroughMode": "Matched",
            "appendMatch": [
                {"type": "Domain", "value": "*w.example.com", "protocol": "tls"},
                {"type": "Domain", "value": "example.com", "protocol": "tcp"},
                {"type": "Domain", "value": "example.com", "protocol": "mysql"},
                {"type": "IP", "value": "10.0.0.300"},
                {"type": "CIDR", "value": "10.0.0.0/33"},
                {"type": "Host", "value": "a"},
            ],
        }
    )
    assert set(errors) == {
        f"{at}[0].value",
        f"{at}[1].protocol",
        f"{at}[2].protocol",
        f"{at}[3].value",
        f"{at}[4].value",
        f"{at}[5].type",
    }
    assert "no partial wildcards" in errors[f"{at}[0].value"]
    assert errors_of({"passthroughMode": "Sometimes"}) == {
        "spec.default.passthroughMode": "must be one of All, Matched, None"
    }
