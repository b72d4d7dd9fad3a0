"""Kuma's documented policy examples applied unchanged at a real global-cp (issue 13).

Each fixture under tests/fixtures/kuma-docs/ has the fields and values of one example on Kuma's
documentation pages (its first line names the page and the example's heading; the README there
lists the examples left out, and why). One global-cp serves every fixture: each is PUT as the
YAML a user would apply, with the admin token. An accepted fixture reads back with the same
spec; the PENDING ones are refused with a 400 naming exactly the fields listed.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.policy.enforced import NOT_ENFORCED
from meshfed.resources.types import default_registry
from tests.integration.federation_support import Cluster, Http
from tests.support import Procs

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[2] / "fixtures" / "kuma-docs"
# `# follows: <page>, example "<heading>"`, and an optional note in parentheses
FOLLOWS = re.compile(r'# follows: (https://kuma\.io/docs/\S+/), example "(.+?)"(?: \(.+\))?')
MESHES = ("default", "my-mesh")  # every mesh a fixture names ("default" the global makes)
DOC_KEYS = {"type", "name", "mesh", "spec"}
TIMES = {"creationTime", "modificationTime"}

# The documented examples the global still refuses, each with every field its 400 names and a
# fragment of that field's reason. The HTTP policy work of issue 13 empties the entries marked
# "13" (HTTP fields now refused because the sidecar is a TCP proxy, and MeshService selected by
# labels); the others name what else would empty them. An entry whose fixture is accepted, or
# refused with other fields or reasons, fails the test: keep the table true.
PENDING: dict[str, dict[str, str]] = {
    # meshfed has no shadow mode: the `kuma.io/effect: shadow` label is refused, not ignored
    "meshtimeout/intro-shadow-frontend-timeouts.yaml": {
        "labels['kuma.io/effect']": "no shadow mode"
    },
    # not in issue 13: gRPC health checks
    "meshhealthcheck/grpc-cart-to-payment.yaml": {"spec.to[0].default.grpc": NOT_ENFORCED},
}


# Issue 17's service resources, applied by test_kuma_docs_services.py (a MeshService at a zone)
SERVICE_TYPES = ("meshservice", "meshmultizoneservice", "hostnamegenerator")


def fixture_names() -> list[str]:
    return sorted(
        p.relative_to(FIXTURES).as_posix()
        for p in FIXTURES.rglob("*.yaml")
        if p.relative_to(FIXTURES).parts[0] not in SERVICE_TYPES
    )


NAMES = fixture_names()


def text_of(name: str) -> str:
    return (FIXTURES / name).read_text()


def doc_of(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all(text_of(name)))
    assert len(docs) == 1, f"{name}: one resource a file"
    doc: dict[str, Any] = docs[0]
    return doc


def path_of(doc: dict[str, Any]) -> str:
    plural = default_registry().get(doc["type"]).plural
    return f"/meshes/{doc['mesh']}/{plural}/{doc['name']}"


def put_yaml(http: Http, path: str, text: str) -> tuple[int, Any]:
    """PUT the file's text as it is (`Content-Type: application/yaml`), as a user applies it."""
    req = urllib.request.Request(http.base + path, data=text.encode(), method="PUT")
    req.add_header("Content-Type", "application/yaml")
    for key, value in http.headers().items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, yaml.safe_load(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, yaml.safe_load(err.read() or b"null")


@pytest.fixture(scope="module")
def global_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    """One global-cp for every fixture, with the meshes they name."""
    root: Path = tmp_path_factory.mktemp("kuma-docs")
    procs = Procs(root)
    try:
        cluster = Cluster.create(procs, root, zone_names=())
        cluster.start()
        http = cluster.glob.http
        known = {m["name"] for m in http.items("/meshes")}
        for mesh in MESHES:
            if mesh not in known:
                http.put(f"/meshes/{mesh}", {"type": "Mesh", "name": mesh})
        yield http
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def test_every_fixture_follows_one_documented_example_in_kumas_universal_form() -> None:
    assert len(NAMES) >= 20, NAMES
    seen: set[tuple[str, str]] = set()
    for name in NAMES:
        first = text_of(name).splitlines()[0]
        assert FOLLOWS.fullmatch(first), (
            f"{name}: first line must be '# follows: <page URL>, example \"<heading>\"'"
        )
        doc = doc_of(name)
        assert DOC_KEYS <= set(doc) <= {*DOC_KEYS, "labels"}, name
        assert name.split("/")[0] == doc["type"].lower(), name
        assert doc["mesh"] in MESHES, name
        # two fixtures following the same heading differ in what they hold
        key = (first, yaml.safe_dump(doc["spec"], sort_keys=True))
        assert key not in seen, f"{name} repeats another fixture"
        seen.add(key)
    assert (FIXTURES / "README.md").is_file()  # the examples left out, with reasons


def test_the_pending_table_names_only_existing_fixtures() -> None:
    assert set(PENDING) <= set(NAMES), set(PENDING) - set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_documented_example_applies_unchanged_or_is_refused_as_pending(
    global_http: Http, name: str
) -> None:
    doc = doc_of(name)
    path = path_of(doc)
    status, body = put_yaml(global_http, path, text_of(name))
    if name in PENDING:
        assert status == 400, f"{name} is accepted now ({status}): take it out of PENDING"
        named = {p["field"]: p["reason"] for p in body["invalid_parameters"]}
        assert set(named) == set(PENDING[name]), (name, named)
        for field, fragment in PENDING[name].items():
            assert fragment in named[field], (name, field, named[field])
        assert global_http.call("GET", path)[0] == 404  # nothing stored
        return
    assert status in (200, 201), (name, status, body)
    got = global_http.get(path)
    assert set(got) - TIMES == DOC_KEYS | {"labels"}, (name, got)
    assert {k: got[k] for k in DOC_KEYS} == {k: doc[k] for k in DOC_KEYS}, name
    # the example's own labels come back; the global adds only its origin label
    assert got["labels"] == {**doc.get("labels", {}), "kuma.io/origin": "global"}, name
    global_http.delete(path)  # the next example may reuse the name
