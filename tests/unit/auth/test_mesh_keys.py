"""Every Mesh gets its dataplane-token signing key (meshfed.auth.mesh_keys), once."""

from __future__ import annotations

import asyncio

from meshfed.auth import keyring
from meshfed.auth.mesh_keys import DataplaneKeyJob, meshes_without_key
from meshfed.auth.tokens import TokenKind
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from tests.unit.policy.factories import mesh_resource

KEY_1 = keyring.signing_key_name(TokenKind.DATAPLANE, 1)


def test_meshes_without_key() -> None:
    meshes = [mesh_resource("a"), mesh_resource("b")]
    key = keyring.make_secret(TokenKind.DATAPLANE, KEY_1, b"pem", "a")
    other = keyring.make_secret(TokenKind.DATAPLANE, "dataplane-token-revocations", b"", "b")
    assert meshes_without_key(meshes, [key, other]) == ["b"]


async def test_the_job_gives_every_mesh_one_key() -> None:
    store = MemoryStore()
    await store.create(mesh_resource("default"))
    job = DataplaneKeyJob(store)
    task = asyncio.create_task(job.run())
    try:

        async def keys(mesh: str) -> list[str]:
            page = await store.list("Secret", mesh=mesh)
            return [r.meta.name for r in page.items]

        async def keyed(mesh: str) -> bool:
            return await keys(mesh) == [KEY_1]

        await async_wait_until(lambda: keyed("default"), what="default's key")
        await store.create(mesh_resource("late"))
        await async_wait_until(lambda: keyed("late"), what="a new mesh's key")
        # A second job (another replica, a restart) makes no second key.
        await DataplaneKeyJob(store).ensure(["default", "late"])
        assert await keys("default") == [KEY_1] and await keys("late") == [KEY_1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
