"""Every resource type through the real API and a real SQLite store, on each side that owns it:
YAML -> PUT -> store -> GET -> YAML comes back unchanged (apart from what the server sets:
times and system labels), and so does a second PUT of what GET returned. Types a side does not
own answer 405 there; system-only types (insights, VIPs) go store -> GET -> YAML unchanged.
Then every Kuma documentation fixture is PUT at the global: accepted ones round-trip, the
ones outside what the sidecar enforces are refused with their field names and store nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.policy.enforced import NOT_ENFORCED
from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.descriptors import Mode, Scope, TypeDescriptor
from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.sqlite import SqliteStore
from tests.auth_support import admin_headers
from tests.unit.resources.test_kuma_fixtures import DOCS, REFUSED
from tests.unit.resources.test_valid_examples import EXAMPLES, NOT_ENFORCED_FIELDS

pytestmark = pytest.mark.integration

REG = default_registry()
ZONE = "zone-1"
YAML = {"Content-Type": "application/yaml"}
TIMES = ("creationTime", "modificationTime")


class Side:
    """One control plane's API (global or zone mode) over its own SQLite store."""

    def __init__(self, mode: Mode, store: SqliteStore, client: TestClient[Any, Any]) -> None:
        self.mode, self.store, self.client = mode, store, client

    def stamped(self, doc: dict[str, Any]) -> dict[str, str]:
        """The system labels this side puts on what it stores (a policy applied at a zone
        gets Kuma's zone labels too: meshfed/api/zone_origin.py)."""
        if self.mode is Mode.GLOBAL:
            return {LABEL_ORIGIN: "global"}
        labels = {LABEL_ORIGIN: "zone", LABEL_ZONE: ZONE}
        desc = desc_of(doc)
        if desc.zone_origin:
            labels |= {"kuma.io/display-name": doc["name"], "kuma.io/env": "universal"}
            if desc.scope is Scope.MESH:  # a global-scoped one (HostnameGenerator) has no mesh
                labels["kuma.io/mesh"] = doc["mesh"]
        return labels

    async def seed_mesh(self, name: str) -> None:
        """The Mesh a mesh-scoped resource needs (in a zone it comes from the global)."""
        mesh = Resource("Mesh", Meta(name, labels={LABEL_ORIGIN: "global"}))
        if (await self.store.list("Mesh", name_contains=name)).total == 0:
            await self.store.create(mesh)

    async def put_yaml(self, doc: dict[str, Any]) -> tuple[int, Any]:
        resp = await self.client.put(path(doc), data=text(doc), headers=YAML)
        return resp.status, await resp.json()

    async def get(self, doc: dict[str, Any]) -> tuple[int, Any]:
        resp = await self.client.get(path(doc))
        return resp.status, await resp.json()


@asynccontextmanager
async def side(mode: Mode, data: Path) -> AsyncIterator[Side]:
    store = await SqliteStore.open(data)
    zone = ZONE if mode is Mode.ZONE else None
    ctx = ApiContext(store=store, registry=REG, mode=mode, zone=zone, ready=True)
    client: TestClient[Any, Any] = TestClient(
        TestServer(build_app(ctx), host="127.0.0.1"), headers=await admin_headers(store)
    )
    await client.start_server()
    try:
        yield Side(mode, store, client)
    finally:
        await client.close()
        await store.close()


def desc_of(doc: dict[str, Any]) -> TypeDescriptor:
    return REG.get(doc["type"])


def path(doc: dict[str, Any]) -> str:
    desc = desc_of(doc)
    if desc.scope is Scope.MESH:
        return f"/meshes/{doc['mesh']}/{desc.plural}/{doc['name']}"
    return f"/{desc.plural}/{doc['name']}"


def without_times(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in TIMES}


def as_sent(got: dict[str, Any], sent: dict[str, Any], stamped: dict[str, str]) -> dict[str, Any]:
    """What GET returned, with what the server set checked and taken out again: the times,
    and the system labels it added (a label the document itself carried stays)."""
    assert all(isinstance(got[k], str) and got[k] for k in TIMES), got
    mine = sent.get("labels") or {}
    assert (got.get("labels") or {}) == {**mine, **stamped}, got
    out = without_times(got)
    if mine:
        out["labels"] = {k: got["labels"][k] for k in mine}
    else:
        out.pop("labels", None)
    return out


def text(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def cases() -> list[tuple[str, Mode]]:
    return [(name, mode) for name in sorted(EXAMPLES) for mode in (Mode.GLOBAL, Mode.ZONE)]


def test_the_examples_cover_every_type_and_both_sides() -> None:
    covered = {yaml.safe_load(raw)["type"] for raw in EXAMPLES.values()}
    assert covered == set(REG.names())
    writable = {m for d in REG for m in Mode if d.writable_on(m)}
    assert writable == {Mode.GLOBAL, Mode.ZONE}
    assert any(d.system_only for d in REG)


@pytest.mark.parametrize(("name", "mode"), cases(), ids=[f"{n}-{m}" for n, m in cases()])
async def test_example_round_trips_through_api_and_sqlite(
    name: str, mode: Mode, tmp_path: Path
) -> None:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLES[name])
    desc = desc_of(doc)
    async with side(mode, tmp_path / "data") as s:
        if desc.scope is Scope.MESH:
            await s.seed_mesh(doc["mesh"])
        if not desc.writable_on(mode):
            await _read_only(s, doc, stored_elsewhere=name not in NOT_ENFORCED_FIELDS)
            return
        status, body = await s.put_yaml(doc)
        if mode is Mode.ZONE and (doc.get("labels") or {}).get(LABEL_ORIGIN) == "global":
            # A zone may apply a policy (decision 149) but not claim the global wrote it.
            assert status == 400, body
            assert [p["field"] for p in body["invalid_parameters"]] == ["labels['kuma.io/origin']"]
            return
        if name in NOT_ENFORCED_FIELDS:
            assert status == 400, body
            assert [p["field"] for p in body["invalid_parameters"]] == NOT_ENFORCED_FIELDS[name]
            assert (await s.get(doc))[0] == 404
            return
        assert status == 201, body
        await _round_trip(s, desc, doc, body)


async def _round_trip(
    s: Side,
    desc: TypeDescriptor,
    doc: dict[str, Any],
    put_body: dict[str, Any],
    key_order: bool = True,
) -> None:
    """`key_order`: the document is in the codec's key order (type, mesh, name, ...), so the
    YAML text must come back byte for byte; otherwise only the order of keys may differ."""
    status, got = await s.get(doc)
    assert status == 200 and got == put_body
    # What the store holds is what the API serves.
    stored = await s.store.get(desc.name, doc.get("mesh", ""), doc["name"])
    assert resource_to_dict(stored, desc) == got
    # YAML -> API -> store -> API -> YAML: the same text, apart from what the server set.
    back = as_sent(got, doc, s.stamped(doc))
    if key_order:
        assert text(back) == text(without_times(doc))
    else:
        assert yaml.safe_dump(back) == yaml.safe_dump(without_times(doc))
    # What GET returned goes back as it is (system labels and all): an update, same content.
    status, again = await s.put_yaml(got)
    assert status == 200, again
    assert again["creationTime"] == got["creationTime"]
    assert without_times(again) == without_times(got)


async def _read_only(s: Side, doc: dict[str, Any], stored_elsewhere: bool) -> None:
    """405 here; what the system (or KDS) stores is served unchanged. `stored_elsewhere`
    False: the owning side refuses the document, so it is never stored anywhere."""
    status, body = await s.put_yaml(doc)
    assert status == 405, body
    assert (await s.client.delete(path(doc))).status in (404, 405)
    if not stored_elsewhere:
        return
    res = resource_from_dict(doc, REG)
    await s.store.create(res)
    status, got = await s.get(doc)
    assert status == 200, got
    assert text(as_sent(got, doc, {})) == text(without_times(doc))


# -- Kuma's documentation examples --------------------------------------------------------------


@pytest.fixture
async def global_side(tmp_path: Path) -> AsyncIterator[Side]:
    async with side(Mode.GLOBAL, tmp_path / "global") as s:
        yield s


async def test_every_kuma_fixture_through_the_global_api(global_side: Side) -> None:
    s = global_side
    accepted = refused = 0
    for label, doc in DOCS:
        await s.seed_mesh(doc["mesh"])
        key = f"{doc['type']}/{doc['name']}"
        status, body = await s.put_yaml(doc)
        if key in REFUSED:
            assert status == 400, (label, body)
            fields = [p["field"] for p in body["invalid_parameters"]]
            assert fields == REFUSED[key], label
            assert all(NOT_ENFORCED in p["reason"] for p in body["invalid_parameters"]), label
            assert (await s.get(doc))[0] == 404, label
            refused += 1
            continue
        assert status == 201, (label, body)
        await _round_trip(s, desc_of(doc), doc, body, key_order=False)
        accepted += 1
    assert accepted and refused and accepted + refused == len(DOCS)
