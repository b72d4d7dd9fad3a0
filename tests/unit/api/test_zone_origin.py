"""Zone-originated policies at the API (issue 17 item 6; decisions 149-151): a zone's API
stores a policy with Kuma's zone labels; the global copies of policies stay read-only in a
zone, a zone's copies stay read-only at the global; the zone's write needs an admin."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import TokenKind, UserClaims, issue
from meshfed.kds.naming import zone_resource_name
from meshfed.resources.descriptors import Mode
from meshfed.resources.model import Meta, Resource
from meshfed.resources.types import default_registry
from tests.auth_support import bearer
from tests.unit.api.conftest import Api, start_api, timeout
from tests.unit.api.test_resources_api import rejected

MT = "/meshes/default/meshtimeouts"
ZONE_LABELS = {
    "kuma.io/origin": "zone",
    "kuma.io/zone": "zone-1",
    "kuma.io/mesh": "default",
    "kuma.io/env": "universal",
    "kuma.io/display-name": "t1",
}


async def _with_mesh(mode: Mode, **kw: Any) -> tuple[Api, TestClient[Any, Any]]:
    api, client = await start_api(mode, **kw)
    # In a zone the Mesh is global-owned: seed it as KDS would, through the store.
    await api.store.create(Resource(type="Mesh", meta=Meta(name="default")))
    return api, client


@pytest.fixture
async def zone_api() -> AsyncIterator[Api]:
    api, client = await _with_mesh(Mode.ZONE, zone="zone-1")
    try:
        yield api
    finally:
        await client.close()
        await api.store.close()


@pytest.fixture
async def global_api() -> AsyncIterator[Api]:
    api, client = await _with_mesh(Mode.GLOBAL)
    try:
        yield api
    finally:
        await client.close()
        await api.store.close()


def test_every_policy_type_may_originate_in_a_zone_and_nothing_else_global_owned() -> None:
    # Kuma: every plugin policy is GlobalToZones | ZoneToGlobal; Mesh, Zone, secrets are not.
    zone_writable = {d.name for d in default_registry() if d.writable_on(Mode.ZONE)}
    assert {"MeshTimeout", "MeshRetry", "MeshTrafficPermission", "MeshHTTPRoute"} <= zone_writable
    assert not {"Mesh", "Zone", "Secret", "GlobalSecret", "ZoneInsight"} & zone_writable


async def test_a_policy_applied_at_a_zone_is_stored_with_kumas_zone_labels(
    zone_api: Api,
) -> None:
    resp = await zone_api.put(f"{MT}/t1", timeout("t1", labels={"team": "a"}))
    assert resp.status == 201, await resp.text()
    got = await resp.json()
    assert got["labels"] == {**ZONE_LABELS, "team": "a"}
    changed = timeout("t1")
    changed["spec"]["to"][0]["default"]["idleTimeout"] = "30s"
    resp = await zone_api.put(f"{MT}/t1", changed)
    assert resp.status == 200 and (await resp.json())["labels"] == ZONE_LABELS
    assert (await zone_api.json("DELETE", f"{MT}/t1")) == (200, {})


async def test_a_zone_write_claiming_another_zone_or_the_global_is_refused(
    zone_api: Api,
) -> None:
    for label, value in (("kuma.io/zone", "zone-2"), ("kuma.io/origin", "global")):
        body = await rejected(
            zone_api, "PUT", f"{MT}/t1", 400, json=timeout("t1", labels={label: value})
        )
        assert body["invalid_parameters"][0]["field"] == f"labels[{label!r}]"


async def test_a_federated_zone_wants_the_origin_label_as_kuma_does() -> None:
    api, client = await _with_mesh(Mode.ZONE, zone="zone-1", federated=True)
    try:
        body = await rejected(api, "PUT", f"{MT}/t1", 400, json=timeout("t1"))
        [problem] = body["invalid_parameters"]
        assert problem["field"] == "labels['kuma.io/origin']"
        assert problem["reason"].startswith("must be set to 'zone' to apply a MeshTimeout")
        labelled = timeout("t1", labels={"kuma.io/origin": "zone"})
        resp = await api.put(f"{MT}/t1", labelled)
        assert resp.status == 201 and (await resp.json())["labels"] == ZONE_LABELS
        # A Dataplane is the zone's anyway: no label needed.
        dp = {
            "type": "Dataplane",
            "name": "dp-1",
            "mesh": "default",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
            },
        }
        assert (await api.put("/meshes/default/dataplanes/dp-1", dp)).status == 201
        # The global's copy answers 405 (where it comes from) rather than the missing label.
        copy = Resource(
            "MeshTimeout",
            Meta(name="g1", mesh="default", labels={"kuma.io/origin": "global"}),
            timeout("g1")["spec"],
        )
        await api.store.create(copy)
        await rejected(api, "PUT", f"{MT}/g1", 405, json=timeout("g1"))
    finally:
        await client.close()
        await api.store.close()


async def test_a_global_copy_stays_read_only_in_a_zone(zone_api: Api) -> None:
    copy = Resource(
        "MeshTimeout",
        Meta(name="g1", mesh="default", labels={"kuma.io/origin": "global"}),
        timeout("g1")["spec"],
    )
    await zone_api.store.create(copy)
    for method in ("PUT", "DELETE"):
        body = await rejected(zone_api, method, f"{MT}/g1", 405, json=timeout("g1"))
        assert "synced from the global control plane" in body["detail"], body


async def test_a_zone_write_needs_an_admin_token(zone_api: Api) -> None:
    anonymous = {"Authorization": ""}
    resp = await zone_api.client.put(f"{MT}/t1", json=timeout("t1"), headers=anonymous)
    assert resp.status == 401
    key = await ensure_signing_key(zone_api.store, TokenKind.USER)
    jane = bearer(issue(UserClaims("jane", ("team-a",)), key, dt.timedelta(hours=1)))
    body = await rejected(zone_api, "PUT", f"{MT}/t1", 403, json=timeout("t1"), headers=jane)
    assert "not in group 'mesh-system:admin'" in body["detail"]
    assert (await zone_api.client.put(f"{MT}/t1", json=timeout("t1"))).status == 201
    await rejected(zone_api, "DELETE", f"{MT}/t1", 403, headers=jane)


async def test_a_zones_copy_is_read_only_at_the_global_and_listed(global_api: Api) -> None:
    stored = zone_resource_name("t1", "default", "zone-1")
    copy = Resource(
        "MeshTimeout",
        Meta(name=stored, mesh="default", labels=dict(ZONE_LABELS)),
        timeout("t1")["spec"],
    )
    await global_api.store.create(copy)
    for method in ("PUT", "DELETE"):
        body = await rejected(global_api, method, f"{MT}/{stored}", 405, json=timeout(stored))
        assert body["detail"] == (
            f"MeshTimeout {stored!r} was applied in zone 'zone-1' and is read-only at the "
            "global control plane; change or delete it in zone 'zone-1' (as 't1')"
        )
    status, page = await global_api.json("GET", MT)
    assert status == 200 and [i["name"] for i in page["items"]] == [stored]
    assert page["items"][0]["labels"]["kuma.io/zone"] == "zone-1"
    # The global's own policies are still written there, and cannot pose as a zone's.
    assert (await global_api.put(f"{MT}/t1", timeout("t1"))).status == 201
    await rejected(
        global_api, "PUT", f"{MT}/t2", 400, json=timeout("t2", labels={"kuma.io/origin": "zone"})
    )
