"""Store watch fan-out in one process: a zone's cold sync batch reaching its three readers.

    .venv/bin/python benchmarks/watch_fanout.py [--policies 10000] [--rounds 5] [--readers cache]

A zone-cp's store has three readers (KDS, the service catalog and the dataplane config
server), built here with the same types zone_cp gives them. `--readers cache` (today's
zone-cp, decision 80): one StoreCache, one watch, each reader a view of it. `--readers
mirrors` (before): three StoreMirrors, each its own cache and its own store watch.
Each round opens a fresh SQLite store holding one Mesh, starts the three readers, then
writes `--policies` MeshTimeout policies (labelled as the global sends them, the shape
benchmarks/kds_propagation.py uses) plus one Dataplane as ONE `write_batch`, which is how
the zone applies a KDS response. Timed: from calling write_batch until every mirror has
applied the batch's last event it watches (the last policy for the dataplane server's mirror,
the Dataplane for the other two), i.e. until the whole batch went through every watch.
The watchers run on the event loop while write_batch's caller waits for the SQLite thread, so
the same batch is also timed into a fresh store with no watcher at all: the difference is
what the fan-out costs. CPU is the process's (the SQLite thread's included). Each watched
round also prints the store watches open and the process's resident memory (VmRSS, from
/proc) with the readers holding the batch; compare the two modes in separate runs.

Not a test: prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshfed.kds.naming import types_zone_to_global
from meshfed.kds.views import zone_mirror
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.mesh import MESH
from meshfed.store.cache import CacheView, StoreCache
from meshfed.store.mirror import StoreMirror
from meshfed.store.sqlite import SqliteStore
from zone_cp.dppusher import WATCHED as DPSERVER_TYPES
from zone_cp.services import WATCHED as SERVICES_TYPES

ZONE = "zone-1"
MESH_NAME = "default"


def policy(name: str) -> Resource:
    labels = {LABEL_ORIGIN: ORIGIN_GLOBAL}
    spec = {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "10s"}}],
    }
    return Resource("MeshTimeout", Meta(name, MESH_NAME, labels), spec)


def dataplane(name: str) -> Resource:
    spec = {
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
        }
    }
    return Resource(DATAPLANE.name, Meta(name, MESH_NAME), spec)


def vm_rss_kib() -> int:
    """This process's resident memory (as benchmarks/kds_propagation.py reads it)."""
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0])


def identity(res: Resource) -> Resource:
    return res


class Waiter:
    """Set once a mirror has notified the key it is waited for."""

    def __init__(self, type_name: str, key: Key) -> None:
        self.type_name, self.key = type_name, key
        self.done = asyncio.Event()

    def __call__(self, type_name: str, key: Key | None, res: Resource | None) -> None:
        if type_name == self.type_name and key == self.key and res is not None:
            self.done.set()


async def one_round(
    root: Path, count: int, watched: bool, shared: bool = True
) -> tuple[float, float, int, int]:
    """(seconds until the batch is written and, if `watched`, applied by every reader; CPU
    seconds; store watches open; VmRSS KiB then) for one batch into a fresh store."""
    store = await SqliteStore.open(root)
    mirrors: list[CacheView[Any]] = []
    cache: StoreCache | None = None
    try:
        await store.create(Resource(MESH.name, Meta(MESH_NAME, labels={})))
        registry = default_registry()
        if watched and shared:
            cache = StoreCache(store)
            mirrors = [
                zone_mirror(store, types_zone_to_global(registry), ZONE, cache),
                cache.subscribe(SERVICES_TYPES),
                cache.subscribe(DPSERVER_TYPES),
            ]
        elif watched:
            mirrors = [
                zone_mirror(store, types_zone_to_global(registry), ZONE),
                StoreMirror(store, SERVICES_TYPES, identity),
                StoreMirror(store, DPSERVER_TYPES, identity),
            ]
        puts = [policy(f"timeout-{i:05d}") for i in range(count)] + [dataplane("sentinel")]
        last_policy = Key(MESH_NAME, puts[-2].name)
        sentinel = Key(MESH_NAME, "sentinel")
        waiters = [
            Waiter(DATAPLANE.name, sentinel),
            Waiter(DATAPLANE.name, sentinel),
            Waiter("MeshTimeout", last_policy),
        ][: len(mirrors)]
        unlisten: list[Callable[[], None]] = []
        for mirror, waiter in zip(mirrors, waiters, strict=True):
            unlisten.append(mirror.listen(waiter))
            await mirror.start()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await store.write_batch(puts, [])
        await asyncio.wait_for(asyncio.gather(*(w.done.wait() for w in waiters)), 120)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        watches = store._hub.watcher_count()
        rss = vm_rss_kib()
        for stop in unlisten:
            stop()
        return elapsed, cpu, watches, rss
    finally:
        for mirror in mirrors:
            await mirror.stop()
        if cache is not None:
            await cache.stop()
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--readers", choices=("cache", "mirrors"), default="cache")
    args = parser.parse_args()
    shared = args.readers == "cache"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    watched: list[tuple[float, float, int, int]] = []
    bare: list[tuple[float, float, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="watch-fanout-") as tmp:
        for n in range(args.rounds):
            # Alternated, so a busy neighbour weighs on both about equally.
            bare.append(await one_round(Path(tmp) / f"b{n}", args.policies, watched=False))
            watched.append(
                await one_round(Path(tmp) / f"w{n}", args.policies, watched=True, shared=shared)
            )
            print(
                f"round {n + 1}: {args.policies} policies through 3 readers ({args.readers}) "
                f"{watched[-1][0]:.3f} s (CPU {watched[-1][1]:.3f} s, {watched[-1][2]} store "
                f"watch(es), VmRSS {watched[-1][3] / 1024:.1f} MiB); write_batch with no "
                f"watcher {bare[-1][0]:.3f} s (CPU {bare[-1][1]:.3f} s)"
            )
    with_mirrors = statistics.median(r[0] for r in watched)
    without = statistics.median(r[0] for r in bare)
    cpu_with = statistics.median(r[1] for r in watched)
    cpu_without = statistics.median(r[1] for r in bare)
    print(
        f"median: write_batch until all 3 readers applied it {with_mirrors:.3f} s "
        f"(min {min(r[0] for r in watched):.3f}); with no watcher {without:.3f} s; "
        f"fan-out {with_mirrors - without:.3f} s wall, {cpu_with - cpu_without:.3f} s CPU"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
