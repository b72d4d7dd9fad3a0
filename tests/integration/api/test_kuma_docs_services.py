"""Kuma's documented MeshService, MeshMultiZoneService and HostnameGenerator examples (issue 17)
applied unchanged: MeshServices at a zone (they are zone-owned), the others at the global.

The fixtures live beside the policy ones (tests/fixtures/kuma-docs/<type>/, first line naming
the page and heading; the README lists what is left out). An accepted fixture reads back
with the same body (a MeshService's `status` is the zone's to write, so only its `spec` is
compared); the PENDING ones are refused with a 400 naming exactly the fields listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.resources.model import ORIGIN_GLOBAL, ORIGIN_ZONE
from meshfed.resources.types import default_registry
from tests.integration.api.test_kuma_docs_examples import FOLLOWS, SERVICE_TYPES, put_yaml
from tests.integration.federation_support import Cluster, Http
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[2] / "fixtures" / "kuma-docs"
NAMES = sorted(
    p.relative_to(FIXTURES).as_posix() for d in SERVICE_TYPES for p in (FIXTURES / d).glob("*.yaml")
)
BOOLEAN = "must be a string"
PENDING: dict[str, dict[str, str]] = {
    # the page writes the label value as a YAML boolean (unquoted `false` / `true`)
    "hostnamegenerator/synced-kube-mesh-service.yaml": {
        "spec.selector.meshService.matchLabels['k8s.kuma.io/is-headless-service']": BOOLEAN
    },
    "hostnamegenerator/synced-headless-kube-mesh-service.yaml": {
        "spec.selector.meshService.matchLabels['k8s.kuma.io/is-headless-service']": BOOLEAN
    },
}


@dataclass
class Sides:
    glob: Http
    zone: Http


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sides]:
    root: Path = tmp_path_factory.mktemp("kuma-docs-services")
    procs = Procs(root)
    try:
        cluster = Cluster.create(procs, root, zone_names=("zone-1",))
        cluster.start()
        cluster.wait_online()
        yield Sides(cluster.glob.http, cluster.zones["zone-1"].http)
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def doc_of(name: str) -> tuple[str, dict[str, Any]]:
    text = (FIXTURES / name).read_text()
    return text, yaml.safe_load(text)


def path_of(doc: dict[str, Any]) -> str:
    plural = default_registry().get(doc["type"]).plural
    mesh = doc.get("mesh")
    return f"/meshes/{mesh}/{plural}/{doc['name']}" if mesh else f"/{plural}/{doc['name']}"


def test_every_example_is_a_fixture_following_its_page() -> None:
    assert len(NAMES) >= 20
    for name in NAMES:
        text, doc = doc_of(name)
        assert FOLLOWS.fullmatch(text.splitlines()[0]), name
        assert name.split("/")[0] == doc["type"].lower(), name
    assert set(PENDING) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_documented_example_applies_unchanged(sides: Sides, name: str) -> None:
    text, doc = doc_of(name)
    zone_owned = doc["type"] == "MeshService"
    http = sides.zone if zone_owned else sides.glob
    path = path_of(doc)
    status, body = put_yaml(http, path, text)
    if name in PENDING:
        assert status == 400, f"{name} is accepted now ({status}): take it out of PENDING"
        named = {p["field"]: p["reason"] for p in body["invalid_parameters"]}
        assert set(named) == set(PENDING[name]), (name, named)
        for field, fragment in PENDING[name].items():
            assert fragment in named[field], (name, field, named[field])
        return
    assert status in (200, 201), (name, status, body)
    got = http.get(path)
    assert got["spec"] == doc["spec"], name
    origin = ORIGIN_ZONE if zone_owned else ORIGIN_GLOBAL
    extra = {"kuma.io/origin": origin} | ({"kuma.io/zone": "zone-1"} if zone_owned else {})
    assert got["labels"] == {**doc.get("labels", {}), **extra}, name
    if zone_owned:  # the zone gives it a VIP of its own range, in the status
        wait_until(lambda: http.get(path).get("status", {}).get("vips"), timeout=10, what="its VIP")
    http.delete(path)  # the next example may reuse the name
