"""PUT is create-or-update (Kuma's), so concurrent PUTs of one new resource
without If-Match all succeed (one 201, the rest 200); a stale If-Match is still a 409."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.inprocess_federation import SqliteApi

SPEC: dict[str, Any] = {
    "targetRef": {"kind": "Mesh"},
    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "20s"}}],
}


def timeout_doc(name: str, idle: str = "20s") -> dict[str, Any]:
    spec = {**SPEC, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}
    return {"type": "MeshTimeout", "name": name, "mesh": "default", "spec": spec}


async def test_concurrent_creates_of_one_name_all_succeed(sqlite_api: SqliteApi) -> None:
    store, client = sqlite_api
    assert (await client.put("/meshes/default", json={"type": "Mesh", "name": "default"})).status
    for i in range(20):
        path = f"/meshes/default/meshtimeouts/p{i}"
        answers = await asyncio.gather(
            *(client.put(path, json=timeout_doc(f"p{i}", f"{j + 1}s")) for j in range(4))
        )
        statuses = sorted(r.status for r in answers)
        assert statuses == [200, 200, 200, 201], [await r.text() for r in answers]
        # The stored one is the last write: one of the four, whole.
        stored = await store.get("MeshTimeout", "default", f"p{i}")
        idle = stored.spec["to"][0]["default"]["idleTimeout"]
        assert idle in {"1s", "2s", "3s", "4s"}


async def test_concurrent_updates_without_if_match_all_succeed_and_with_a_stale_one_409(
    sqlite_api: SqliteApi,
) -> None:
    _, client = sqlite_api
    await client.put("/meshes/default", json={"type": "Mesh", "name": "default"})
    path = "/meshes/default/meshtimeouts/p"
    created = await client.put(path, json=timeout_doc("p"))
    etag = created.headers["ETag"]
    answers = await asyncio.gather(
        *(client.put(path, json=timeout_doc("p", f"{j + 1}s")) for j in range(6))
    )
    assert [r.status for r in answers] == [200] * 6
    # The version the client read is stale now: its conditional write is the client's conflict.
    stale = await client.put(path, json=timeout_doc("p", "9s"), headers={"If-Match": etag})
    assert stale.status == 409
    assert "modified" in (await stale.json())["detail"]
    # If-Match: * only asks that it exists; concurrent ones all succeed.
    answers = await asyncio.gather(
        *(
            client.put(path, json=timeout_doc("p", f"{j + 1}m"), headers={"If-Match": "*"})
            for j in range(4)
        )
    )
    assert [r.status for r in answers] == [200] * 4
