"""The global's store mirror on etcd: when etcd compacted the history a broken watch needs,
the mirror reloads everything and ends equal to the store (a 3-member cluster, real kills)."""

from __future__ import annotations

from aetcd import rpc

from meshfed.kds.naming import types_global_to_zone
from meshfed.kds.views import global_mirror
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.model import Key, Resource
from meshfed.resources.types import default_registry
from meshfed.store.etcd import EtcdStore
from tests.etcd_cluster import EtcdCluster
from tests.support import async_wait_until


def policy(name: str, idle: str) -> Resource:
    return resource_from_dict(
        {
            "type": "MeshTimeout",
            "name": name,
            "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
            },
        },
        default_registry(),
    )


async def _true(value: bool) -> bool:
    return value


async def test_mirror_reloads_after_its_watch_resumes_into_compacted_history(
    etcd_cluster: EtcdCluster,
) -> None:
    watched, other = etcd_cluster.members[0], etcd_cluster.members[1:]
    prefix = "/meshfed-ha-compaction"
    # The mirror's store talks to one member only, so killing it breaks its watch for sure.
    mirrored = await EtcdStore.open(watched.endpoint, prefix=prefix)
    writer = await EtcdStore.open([m.endpoint for m in other], prefix=prefix)
    mirror = global_mirror(mirrored, types_global_to_zone(default_registry()))
    try:
        await writer.create(policy("kept", "1s"))
        await writer.create(policy("gone", "1s"))
        await mirror.start()
        assert mirror.get("MeshTimeout", Key("default", "gone")) is not None

        etcd_cluster.kill(watched)
        await writer.update(policy("kept", "2s"))
        await writer.delete("MeshTimeout", "default", "gone")
        await writer.create(policy("new", "3s"))
        revision = (await writer.connection.range(rpc.RangeRequest(key=b"/"))).header.revision
        await writer.connection.call(
            lambda s: s.kv.Compact,
            rpc.CompactionRequest(revision=revision, physical=True),
            idempotent=True,
            what="compaction",
        )
        etcd_cluster.start(watched)

        async def equal_to_store() -> bool:
            want = {(r.name, r.meta.version) for r in (await writer.list("MeshTimeout")).items}
            got = {(r.name, r.meta.version) for r, _ in mirror.entries("MeshTimeout")}
            return mirror.reloads >= 1 and got == want

        await async_wait_until(equal_to_store, timeout=20, what="mirror reloaded")
        kept = mirror.get("MeshTimeout", Key("default", "kept"))
        assert kept is not None and kept[0].spec["to"][0]["default"]["idleTimeout"] == "2s"
        assert mirror.get("MeshTimeout", Key("default", "gone")) is None

        # And it follows the store again afterwards.
        await writer.create(policy("after", "4s"))
        await async_wait_until(
            lambda: _true(mirror.get("MeshTimeout", Key("default", "after")) is not None),
            timeout=10,
            what="following again",
        )
    finally:
        await mirror.stop()
        await mirrored.close()
        await writer.close()
