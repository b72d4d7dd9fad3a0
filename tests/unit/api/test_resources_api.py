"""Resource routes: CRUD, ownership, concurrency, paging, and every class of bad input.

Every rejected request also checks that the store is unchanged (same revision, same items).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from meshfed.resources.descriptors import Mode
from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from tests.inprocess_federation import SqliteApi
from tests.unit.api.conftest import Api, assert_std_error, fields, mesh, start_api, timeout

MT = "/meshes/default/meshtimeouts"


@pytest.fixture
async def seeded(api: Api) -> Api:
    assert (await api.put("/meshes/default", mesh("default"))).status == 201
    assert (await api.put(f"{MT}/t1", timeout("t1"))).status == 201
    return api


async def rejected(api: Api, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
    """Sends a request that must fail with `status`; asserts the store did not change."""
    before = await api.snapshot()
    resp = await api.client.request(method, path, **kwargs)
    body = await resp.json()
    assert resp.status == status, body
    assert_std_error(body, status)
    assert await api.snapshot() == before
    return body  # type: ignore[no-any-return]


# ---- the happy path ------------------------------------------------------------------------


async def test_create_get_update_delete(api: Api) -> None:
    resp = await api.put("/meshes/default", mesh("default"))
    assert resp.status == 201
    resp = await api.put(f"{MT}/t1", timeout("t1"))
    assert resp.status == 201
    created = await resp.json()
    assert created["spec"] == timeout("t1")["spec"]
    # The version is the store revision of the write (the admin-token bootstrap wrote first).
    assert resp.headers["ETag"] == f'"{await api.store.revision()}"'

    resp = await api.client.get(f"{MT}/t1")
    assert resp.status == 200
    got = await resp.json()
    assert got == created
    assert list(got)[:6] == ["type", "mesh", "name", "creationTime", "modificationTime", "labels"]
    assert "version" not in json.dumps(got)
    etag = resp.headers["ETag"]

    changed = timeout("t1")
    changed["spec"]["to"][0]["default"]["idleTimeout"] = "30s"
    resp = await api.put(f"{MT}/t1", changed)
    assert resp.status == 200
    updated = await resp.json()
    assert updated["spec"]["to"][0]["default"]["idleTimeout"] == "30s"
    assert updated["creationTime"] == created["creationTime"]
    assert resp.headers["ETag"] != etag

    status, body = await api.json("DELETE", f"{MT}/t1")
    assert (status, body) == (200, {})
    status, body = await api.json("GET", f"{MT}/t1")
    assert status == 404
    assert_std_error(body, 404)
    assert "t1" in body["detail"]


async def test_yaml_body_round_trips_unchanged(api: Api) -> None:
    await api.put("/meshes/default", mesh("default"))
    doc = timeout("t1", labels={"team": "payments"})
    resp = await api.client.put(
        f"{MT}/t1", data=yaml.safe_dump(doc), headers={"Content-Type": "application/yaml"}
    )
    assert resp.status == 201, await resp.text()
    resp = await api.client.get(f"{MT}/t1")
    got = await resp.json()
    for key in ("creationTime", "modificationTime"):
        got.pop(key)
    assert got["labels"].pop(LABEL_ORIGIN) == "global"
    assert got == doc
    # What GET returned, applied again (times included, as YAML), changes nothing but times.
    again = await (await api.client.get(f"{MT}/t1")).json()
    resp = await api.client.put(
        f"{MT}/t1", data=yaml.safe_dump(again), headers={"Content-Type": "text/yaml"}
    )
    assert resp.status == 200
    after = await resp.json()
    assert {k: v for k, v in after.items() if k != "modificationTime"} == {
        k: v for k, v in again.items() if k != "modificationTime"
    }


async def test_body_without_content_type_json_or_yaml(api: Api) -> None:
    resp = await api.client.put("/meshes/a", data=json.dumps(mesh("a")).encode())
    assert resp.status == 201, await resp.text()
    resp = await api.client.put(
        "/meshes/b", data=b"type: Mesh\nname: b\n", skip_auto_headers=["Content-Type"]
    )
    assert resp.status == 201, await resp.text()
    assert {m["name"] for m in (await (await api.client.get("/meshes")).json())["items"]} == {
        "a",
        "b",
    }


async def test_server_sets_times_and_origin_label(api: Api) -> None:
    body = mesh(
        "default",
        creationTime="2001-01-01T00:00:00Z",
        modificationTime="2001-01-01T00:00:00Z",
        labels={"env": "prod"},
    )
    resp = await api.put("/meshes/default", body)
    got = await resp.json()
    assert resp.status == 201
    assert not got["creationTime"].startswith("2001")
    assert not got["modificationTime"].startswith("2001")
    assert got["labels"] == {LABEL_ORIGIN: "global", "env": "prod"}
    # A system label the global would not set is refused, not silently replaced.
    body["labels"] = {LABEL_ORIGIN: "zone", "env": "prod"}
    refused = await rejected(api, "PUT", "/meshes/default", 400, json=body)
    assert fields(refused) == ["labels['kuma.io/origin']"]


async def test_zone_mode_stamps_origin_and_zone(api: Api) -> None:
    zone_api, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        # In a zone the Mesh is global-owned: seed it as KDS would, through the store.
        await zone_api.store.create(Resource(type="Mesh", meta=Meta(name="default")))
        networking = {
            "address": "127.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
        }
        body = {"type": "Dataplane", "name": "dp-1", "mesh": "default", "networking": networking}
        resp = await zone_api.put("/meshes/default/dataplanes/dp-1", body)
        assert resp.status == 201, await resp.text()
        got = await resp.json()
        assert got["labels"] == {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
        assert got["networking"] == networking
        # A Mesh is global-owned: the zone refuses it and says where to apply it. (Policies
        # may be applied in a zone: tests/unit/api/test_zone_origin.py.)
        body = await rejected(zone_api, "PUT", "/meshes/m2", 405, json={"type": "Mesh"})
        assert body["detail"] == (
            "Mesh cannot be changed in a zone; apply it at the global control plane"
        )
    finally:
        await client.close()


# ---- ownership -----------------------------------------------------------------------------


async def test_dataplane_put_on_global_is_405_saying_where(seeded: Api) -> None:
    dp = {"type": "Dataplane", "name": "dp-1", "mesh": "default", "networking": {}}
    resp = await seeded.client.put("/meshes/default/dataplanes/dp-1", json=dp)
    body = await resp.json()
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET"
    assert body["detail"] == "Dataplane is owned by zone control planes; register it in its zone"
    await rejected(seeded, "DELETE", "/meshes/default/dataplanes/dp-1", 405)
    await rejected(seeded, "PUT", "/zoneingresses/zi-1", 405, json={"type": "ZoneIngress"})


async def test_system_types_are_read_only(seeded: Api) -> None:
    body = await rejected(
        seeded, "PUT", "/zone-insights/z1", 405, json={"type": "ZoneInsight", "name": "z1"}
    )
    assert "read-only" in body["detail"]
    status, listing = await seeded.json("GET", "/zone-insights")
    assert (status, listing["total"]) == (200, 0)


# ---- malformed bodies ----------------------------------------------------------------------


async def test_malformed_json_names_line_and_column(seeded: Api) -> None:
    body = await rejected(
        seeded,
        "PUT",
        f"{MT}/t1",
        400,
        data=b'{\n  "type": "MeshTimeout",\n  "name": }',
        headers={"Content-Type": "application/json"},
    )
    assert "malformed JSON at line 3, column 11" in body["detail"]


async def test_malformed_yaml_names_line_and_column(seeded: Api) -> None:
    body = await rejected(
        seeded,
        "PUT",
        f"{MT}/t1",
        400,
        data=b"type: MeshTimeout\nname: t1\nspec: [unclosed\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert "malformed YAML at line 4" in body["detail"]


async def test_garbage_without_content_type(seeded: Api) -> None:
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, data=b"{ this: is: not: valid")
    assert "neither JSON nor YAML" in body["detail"]


async def test_several_yaml_documents_rejected(seeded: Api) -> None:
    docs = yaml.safe_dump_all([timeout("t1"), timeout("t2")])
    body = await rejected(
        seeded, "PUT", f"{MT}/t1", 400, data=docs, headers={"Content-Type": "application/x-yaml"}
    )
    assert "2 YAML documents" in body["detail"]


async def test_empty_body_rejected(seeded: Api) -> None:
    body = await rejected(
        seeded, "PUT", f"{MT}/t1", 400, data=b"", headers={"Content-Type": "application/json"}
    )
    assert "empty" in body["detail"]


async def test_yaml_values_json_cannot_hold_are_rejected(seeded: Api) -> None:
    doc = b"type: MeshTimeout\nname: t1\nmesh: default\nspec:\n  bad: !!set {a, b}\n"
    body = await rejected(
        seeded, "PUT", f"{MT}/t1", 400, data=doc, headers={"Content-Type": "application/yaml"}
    )
    assert fields(body) == ["spec.bad"]


async def test_yaml_alias_bomb_rejected(seeded: Api) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    doc = "\n".join(["type: MeshTimeout", "name: t1", "mesh: default", "spec:"])
    doc += "\n" + "\n".join("  " + line for line in lines) + "\n"
    body = await rejected(
        seeded, "PUT", f"{MT}/t1", 400, data=doc, headers={"Content-Type": "application/yaml"}
    )
    assert "aliases" in body["detail"]


async def test_wrong_content_type_is_415(seeded: Api) -> None:
    body = await rejected(
        seeded, "PUT", f"{MT}/t1", 415, data=b"<xml/>", headers={"Content-Type": "text/xml"}
    )
    assert "text/xml" in body["detail"]


async def test_two_megabyte_body_is_413(seeded: Api) -> None:
    big = timeout("t1")
    big["spec"]["padding"] = "x" * (2 * 1024 * 1024)
    body = await rejected(seeded, "PUT", f"{MT}/t1", 413, json=big)
    assert str(1024 * 1024) in body["detail"]


async def test_two_megabyte_chunked_body_is_413(seeded: Api) -> None:
    async def chunks() -> Any:
        for _ in range(32):
            yield b"x" * 65536

    await rejected(
        seeded,
        "PUT",
        f"{MT}/t1",
        413,
        data=chunks(),
        headers={"Content-Type": "application/json"},
    )


# ---- invalid resources ---------------------------------------------------------------------


async def test_wrong_types_name_their_fields(seeded: Api) -> None:
    doc = timeout("t1", labels="not-a-map")
    doc["spec"] = ["not", "an", "object"]
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=doc)
    assert set(fields(body)) == {"labels", "spec"}


async def test_unknown_field_named(seeded: Api) -> None:
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=timeout("t1", colour="blue"))
    assert fields(body) == ["colour"]


async def test_missing_required_fields_named(seeded: Api) -> None:
    doc = timeout("t1")
    del doc["mesh"]
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=doc)
    assert "mesh" in fields(body)
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json={"name": "t1"})
    assert fields(body) == ["type"]


async def test_bad_target_ref_kind_named(seeded: Api) -> None:
    doc = timeout("t1")
    doc["spec"]["targetRef"]["kind"] = "NoSuchKind"
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=doc)
    assert "spec.targetRef.kind" in fields(body)


async def test_name_and_mesh_must_match_the_url(seeded: Api) -> None:
    await seeded.put("/meshes/other", mesh("other"))
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=timeout("t2", "other"))
    assert set(fields(body)) == {"name", "mesh"}
    body = await rejected(seeded, "PUT", "/meshes/default", 400, json=mesh("other"))
    assert fields(body) == ["name"]


async def test_type_must_match_the_path(seeded: Api) -> None:
    doc = timeout("t1")
    doc["type"] = "MeshRetry"
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=doc)
    assert "type" in fields(body)


async def test_write_into_unknown_mesh_is_400_naming_mesh(seeded: Api) -> None:
    body = await rejected(
        seeded, "PUT", "/meshes/nope/meshtimeouts/t1", 400, json=timeout("t1", "nope")
    )
    assert fields(body) == ["mesh"]
    assert "does not exist" in body["invalid_parameters"][0]["reason"]


async def test_all_problems_reported_at_once(seeded: Api) -> None:
    doc = {"type": "MeshTimeout", "name": "BAD NAME", "mesh": "nope", "extra": 1, "labels": 3}
    body = await rejected(seeded, "PUT", f"{MT}/t1", 400, json=doc)
    assert {"name", "mesh", "extra", "labels"} <= set(fields(body))


# ---- optimistic concurrency ----------------------------------------------------------------


async def test_if_match(seeded: Api) -> None:
    resp = await seeded.client.get(f"{MT}/t1")
    etag = resp.headers["ETag"]
    resp = await seeded.put(f"{MT}/t1", timeout("t1"), headers={"If-Match": etag})
    assert resp.status == 200
    new_etag = resp.headers["ETag"]
    # The old version is stale now: PUT and DELETE with it are refused.
    body = await rejected(
        seeded, "PUT", f"{MT}/t1", 409, json=timeout("t1"), headers={"If-Match": etag}
    )
    assert "modified" in body["detail"]
    await rejected(seeded, "DELETE", f"{MT}/t1", 409, headers={"If-Match": etag})
    await rejected(seeded, "PUT", f"{MT}/new", 409, json=timeout("new"), headers={"If-Match": etag})
    await rejected(
        seeded, "PUT", f"{MT}/t1", 400, json=timeout("t1"), headers={"If-Match": '"1", "2"'}
    )
    resp = await seeded.client.delete(f"{MT}/t1", headers={"If-Match": new_etag})
    assert resp.status == 200


@pytest.mark.parametrize("value", ['"\u00e9"', "\u00ff", '"1 2"', '""', "W/", '"\t"'])
async def test_an_if_match_that_is_not_one_ascii_version_is_a_400(seeded: Api, value: str) -> None:
    """Found probing the API for issue 12: a non-ASCII If-Match was compared as a version
    (409) and echoed back, undecodable bytes included, in the error's detail."""
    for method, kwargs in (("PUT", {"json": timeout("t1")}), ("DELETE", {})):
        body = await rejected(
            seeded, method, f"{MT}/t1", 400, headers={"If-Match": value}, **kwargs
        )
        assert fields(body) == ["If-Match"]


# ---- dry run -------------------------------------------------------------------------------


async def test_dry_run_validates_and_stores_nothing(seeded: Api) -> None:
    before = await seeded.snapshot()
    resp = await seeded.put(f"{MT}/t2?dryRun=true", timeout("t2"))
    assert resp.status == 201
    got = await resp.json()
    assert got["name"] == "t2" and got["labels"] == {LABEL_ORIGIN: "global"}
    assert got["creationTime"]
    resp = await seeded.put(f"{MT}/t1?dryRun=true", timeout("t1", labels={"x": "y"}))
    assert resp.status == 200
    assert (await resp.json())["labels"] == {"x": "y", LABEL_ORIGIN: "global"}
    assert await seeded.snapshot() == before
    # Dry run checks everything a real write checks: mesh existence, ownership, the body.
    await rejected(
        seeded, "PUT", "/meshes/nope/meshtimeouts/t1?dryRun=true", 400, json=timeout("t1", "nope")
    )
    await rejected(seeded, "PUT", "/meshes/default/dataplanes/d?dryRun=true", 405, json={})
    await rejected(seeded, "PUT", f"{MT}/t1?dryRun=maybe", 400, json=timeout("t1"))


# ---- deletes -------------------------------------------------------------------------------


async def test_delete_missing_is_404(seeded: Api) -> None:
    await rejected(seeded, "DELETE", f"{MT}/nope", 404)
    await rejected(seeded, "DELETE", "/meshes/nope", 404)
    await rejected(seeded, "GET", "/meshes/nope", 404)


async def test_mesh_delete_cascades_to_its_resources_only(seeded: Api) -> None:
    await seeded.put("/meshes/other", mesh("other"))
    await seeded.put("/meshes/other/meshtimeouts/t1", timeout("t1", "other"))
    retry = {
        "type": "MeshRetry",
        "name": "r1",
        "mesh": "default",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 3}}}],
        },
    }
    assert (await seeded.put("/meshes/default/meshretries/r1", retry)).status == 201

    assert (await seeded.client.delete("/meshes/default")).status == 200
    assert (await seeded.client.get(f"{MT}/t1")).status == 404
    assert (await seeded.client.get("/meshes/default/meshretries/r1")).status == 404
    assert (await seeded.client.get("/meshes/other/meshtimeouts/t1")).status == 200
    status, listing = await seeded.json("GET", "/meshtimeouts")
    assert status == 200
    assert [i["mesh"] for i in listing["items"]] == ["other"]


# ---- lists and paging ----------------------------------------------------------------------


async def test_paging_next_links_walk_every_item(seeded: Api) -> None:
    await seeded.put("/meshes/other", mesh("other"))
    expected = {("default", "t1")}
    for i in range(12):
        m = "default" if i % 2 else "other"
        assert (
            await seeded.put(f"/meshes/{m}/meshtimeouts/p{i:02}", timeout(f"p{i:02}", m))
        ).status == 201
        expected.add((m, f"p{i:02}"))
    seen: list[tuple[str, str]] = []
    url: str | None = str(seeded.client.make_url("/meshtimeouts?size=5"))
    pages = 0
    while url is not None:
        assert url.startswith(str(seeded.client.make_url("/")))  # absolute
        resp = await seeded.client.session.get(url)
        page = await resp.json()
        assert resp.status == 200 and page["total"] == 13
        seen += [(i["mesh"], i["name"]) for i in page["items"]]
        url = page["next"]
        pages += 1
    assert pages == 3
    assert seen == sorted(expected)

    status, page = await seeded.json("GET", f"{MT}?size=2&name=p0")
    assert status == 200 and page["total"] == 5  # p01, p03, ... p09 live in default
    assert [i["name"] for i in page["items"]] == ["p01", "p03"]
    resp = await seeded.client.session.get(page["next"])  # the filter and size carry over
    page = await resp.json()
    assert [i["name"] for i in page["items"]] == ["p05", "p07"]


@pytest.mark.parametrize("size", ["abc", "0", "-3", "1001", "1.5"])
async def test_bad_page_size(seeded: Api, size: str) -> None:
    body = await rejected(seeded, "GET", f"{MT}?size={size}", 400)
    assert fields(body) == ["size"]


async def test_page_size_limits_accepted(seeded: Api) -> None:
    for size in ("1", "1000"):
        status, _ = await seeded.json("GET", f"/meshtimeouts?size={size}")
        assert status == 200


@pytest.mark.parametrize("offset", ["garbage", "!!!", "eyJ4IjoxfQ"])
async def test_bad_offset(seeded: Api, offset: str) -> None:
    body = await rejected(seeded, "GET", f"/meshtimeouts?offset={offset}", 400)
    assert fields(body) == ["offset"]


# ---- routing errors ------------------------------------------------------------------------


async def test_unknown_path_and_method_in_kuma_format(seeded: Api) -> None:
    body = await rejected(seeded, "GET", "/no-such-things", 404)
    assert "/no-such-things" in body["detail"]
    body = await rejected(seeded, "POST", "/meshes", 405)
    assert "POST" in body["detail"]
    # No name-level routes across meshes: those need a mesh in the path.
    await rejected(seeded, "PUT", "/meshtimeouts/t1", 404, json=timeout("t1"))


async def test_an_offset_naming_an_unencodable_key_is_a_400_on_sqlite(
    sqlite_api: SqliteApi,
) -> None:
    """Found probing the API for issue 12: a well-formed offset (base64 JSON) holding a lone
    surrogate reached SQLite's parameter binding and answered 500."""
    _, client = sqlite_api
    raw = json.dumps(["k1", "\ud800", "x"]).encode()
    resp = await client.get("/meshes", params={"offset": base64.urlsafe_b64encode(raw).decode()})
    body = await resp.json()
    assert resp.status == 400, body
    assert_std_error(body, 400)
    assert fields(body) == ["offset"]


@pytest.mark.parametrize("value", ["9999999999999999h", "99999999999999999999999s"])
async def test_a_duration_beyond_any_clock_is_never_a_500(seeded: Api, value: str) -> None:
    """Found by the OpenAPI conformance test (issue 12) against typed models: a well-formed
    duration too large for a timedelta overflowed in validation and answered 500."""
    doc = timeout("huge")
    doc["spec"]["to"][0]["default"]["idleTimeout"] = value
    resp = await seeded.put(f"{MT}/huge", doc)
    body = await resp.json()
    assert resp.status in (201, 400), body
    if resp.status == 400:
        assert fields(body) == ["spec.to[0].default.idleTimeout"]
