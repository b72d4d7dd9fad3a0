"""A global process reads its store through one cache: KDS, the mesh CA job and the
dataplane-key job share one store watch (decision 80; each used to hold its own). The orphan
sweeper (meshfed/store/orphans.py) still follows Mesh deletions on a watch of its own."""

from __future__ import annotations

from meshfed.store.sqlite import SqliteStore
from tests.inprocess_federation import Global
from tests.support import async_wait_until


async def test_kds_and_the_leader_jobs_share_one_store_watch(glob: Global) -> None:
    keys = glob.cp.dataplane_keys
    assert keys is not None

    async def keys_job_ran() -> bool:  # the default Mesh got its key: the job follows the store
        return keys.created >= 1

    await async_wait_until(keys_job_ran, timeout=10, what="the dataplane-key job's first pass")
    store = glob.store
    assert isinstance(store, SqliteStore)
    assert store._hub.watcher_count() == 2  # the cache's, and the orphan sweeper's
    assert glob.cp.cache is not None and glob.cp.cache.watches() == 1
