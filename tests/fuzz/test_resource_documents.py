"""Fuzzing resource documents through the API's decode and validate (what every PUT runs:
`parse_document`, then `resource_from_dict`): Kuma's documented examples, mutated, as JSON or
YAML text. Every input ends in a resource or a 400 naming the problem, never another
exception; whatever the API accepts, the zones' KDS validator accepts too (issue 16: one
resource accepted at the edge and refused by sync blocked a zone's whole VIP sync) and it
survives a round trip through its stored form."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from meshfed.api.body import parse_document
from meshfed.api.errors import ApiError
from meshfed.kds.receive import validator
from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry
from tests.bounds import fuzz

REG = default_registry()
KDS_CHECK = validator(REG)
FIXTURES = Path(__file__).resolve().parent.parent / "unit" / "fixtures" / "kuma"
SEEDS: list[dict[str, Any]] = [
    doc
    for path in sorted(FIXTURES.glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if isinstance(doc, dict)
] + [
    {"type": "Mesh", "name": "default"},
    {
        "type": "Mesh",
        "name": "secure",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
    },
    {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-1",
        "labels": {"team": "a"},
        "networking": {
            "address": "10.0.0.1",
            "inbound": [{"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web"}}],
            "transparentProxying": {"reachableServices": ["backend"]},
        },
    },
    {
        "type": "ZoneIngress",
        "name": "zi-1",
        "networking": {"address": "10.0.0.2", "port": 10001},
        "availableServices": [
            {"tags": {"kuma.io/service": "web"}, "instances": 1, "mesh": "default"}
        ],
    },
    {"type": "Secret", "mesh": "default", "name": "s-1", "data": "c2VjcmV0"},
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.sampled_from(["", "0.0.0.0", "a..b", "-1", "10s", "banana", "x" * 254, "a\nb\u0000"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=12,
)
# A mutation: a path of choices into the document, and what to do at its end.
MUTATION = st.tuples(
    st.lists(st.integers(0, 50), max_size=6),
    st.sampled_from(["replace", "delete", "add"]),
    JSON,
    st.text(max_size=20),
)


def mutate(doc: Any, path: list[int], op: str, value: Any, key: str) -> Any:
    """Walks `path` (each step picks a child by index modulo the children) and changes the
    node reached: replace it, delete a child, or add a child."""
    root = {"": doc}
    parent: Any = root
    at: Any = ""
    for step in path:
        node = parent[at]
        if isinstance(node, dict) and node:
            parent, at = node, sorted(node, key=str)[step % len(node)]
        elif isinstance(node, list) and node:
            parent, at = node, step % len(node)
        else:
            break
    node = parent[at]
    if op == "replace":
        parent[at] = value
    elif op == "delete" and isinstance(node, dict) and node:
        del node[sorted(node, key=str)[0]]
    elif op == "delete" and isinstance(node, list) and node:
        node.pop()
    elif op == "add" and isinstance(node, dict):
        node[key] = value
    elif op == "add" and isinstance(node, list):
        node.append(value)
    return root[""]


def check(raw: bytes, content_type: str | None) -> None:
    try:
        doc = parse_document(raw, content_type)
    except ApiError as exc:
        assert exc.status == 400 and exc.detail
        return
    try:
        res = resource_from_dict(doc, REG)
    except ValidationError as exc:
        assert exc.errors and all(isinstance(e.reason, str) and e.reason for e in exc.errors)
        return
    # Accepted at the edge: the zones' KDS validator must agree, and the stored form must
    # parse back to the same resource.
    assert KDS_CHECK(res) is None, (res, KDS_CHECK(res))
    again = resource_from_dict(resource_to_dict(res, REG.get(res.type)), REG)
    assert (again.type, again.meta.name, again.meta.mesh, again.spec) == (
        res.type,
        res.meta.name,
        res.meta.mesh,
        res.spec,
    )


@fuzz(500)
@given(
    seed=st.sampled_from(SEEDS),
    mutations=st.lists(MUTATION, max_size=4),
    as_yaml=st.booleans(),
    content_type=st.sampled_from([None, "application/json", "application/yaml"]),
)
def test_mutated_documents(
    seed: dict[str, Any],
    mutations: list[tuple[list[int], str, Any, str]],
    as_yaml: bool,
    content_type: str | None,
) -> None:
    doc = copy.deepcopy(seed)
    for path, op, value, key in mutations:
        doc = mutate(doc, path, op, value, key)
    text = yaml.safe_dump(doc) if as_yaml else json.dumps(doc)
    check(text.encode(), content_type)


@fuzz(400)
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.sampled_from(SEEDS).map(lambda d: yaml.safe_dump(d).encode()),
    ),
    cut=st.integers(0, 400),
    content_type=st.sampled_from([None, "application/json", "application/yaml"]),
)
def test_any_body_bytes(raw: bytes, cut: int, content_type: str | None) -> None:
    """Raw bytes and documents cut short (as a dropped upload would send)."""
    check(raw[: cut or None], content_type)


def test_yaml_bombs_are_refused() -> None:
    """Aliases that expand a small text into a huge tree: a 400, not memory."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        lines.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [*{prev}, *{prev}, *{prev}]")
    raw = ("\n".join(lines) + "\ntype: Mesh\nname: bomb\n").encode()
    try:
        parse_document(raw, "application/yaml")
    except ApiError as exc:
        assert exc.status == 400
    else:
        raise AssertionError("a YAML alias bomb was accepted")
