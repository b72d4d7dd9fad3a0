"""Policies exactly as Kuma's documentation shows them validate and round-trip unchanged."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.types import default_registry
from meshfed.resources.types.policies import POLICIES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kuma"


def load_all() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            docs.append((f"{path.stem}[{i}]:{doc.get('name')}", doc))
    return docs


DOCS = load_all()


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=[label for label, _ in DOCS])
def test_documented_policy_validates_and_round_trips(label: str, doc: dict[str, Any]) -> None:
    registry = default_registry()
    res = resource_from_dict(doc, registry)
    back = resource_to_dict(res, registry.get(res.type))
    assert back == doc
    # YAML text -> dict -> Resource -> dict -> YAML text: same document (key order aside,
    # which the codec normalises to Kuma's type/mesh/name/spec order).
    text = yaml.safe_dump(doc, sort_keys=True)
    assert yaml.safe_dump(yaml.safe_load(yaml.safe_dump(back)), sort_keys=True) == text


def test_fixtures_cover_every_policy_and_section() -> None:
    per_type = Counter(doc["type"] for _, doc in DOCS)
    for desc in POLICIES:
        assert per_type[desc.name] >= 4, desc.name
    sections: dict[str, set[str]] = {}
    for _, doc in DOCS:
        sections.setdefault(doc["type"], set()).update(
            s for s in ("to", "from", "rules") if s in doc["spec"]
        )
    assert sections == {
        "MeshTrafficPermission": {"from", "rules"},
        "MeshTimeout": {"to", "from", "rules"},
        "MeshRetry": {"to"},
        "MeshHealthCheck": {"to"},
        "MeshCircuitBreaker": {"to", "from", "rules"},
        "MeshLoadBalancingStrategy": {"to"},
    }


def test_fixture_names_are_unique_per_type() -> None:
    keys = [(doc["type"], doc["name"]) for _, doc in DOCS]
    assert len(keys) == len(set(keys))
