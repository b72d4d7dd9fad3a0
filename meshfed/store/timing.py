"""Store operation latencies on `/metrics` (issue 15): `meshfed_store_operation_duration_seconds`.

`time_store` times an opened store's operations in place, on the instance, so the store keeps
its class (`isinstance(store, EtcdStore)` still decides the replica wiring) and nothing
between the callers and the backend changes. What is timed is what the callers await: `get`,
`get_many`, `list`, `write_batch` (the base class's `create`, `update` and `delete` are
write_batches, so they show as one), `delete_mesh_scoped` and `revision`. A failed
operation is timed too (`result="error"`): a store that fails slowly is worth seeing;
a cancelled one is not timed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Histogram

from meshfed.store.base import ResourceStore

TIMED = ("get", "get_many", "list", "write_batch", "delete_mesh_scoped", "revision")
# From an in-memory read (microseconds) to an etcd transaction on a loaded disk.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


def store_histogram() -> Histogram:
    """The histogram, in no registry: the caller adds it to its `/metrics` (a Collector)."""
    return Histogram(
        "meshfed_store_operation_duration_seconds",
        "Store operation latency by operation (get, get_many, list, write_batch, "
        "delete_mesh_scoped, revision) and result (ok|error).",
        ["operation", "result"],
        buckets=BUCKETS,
        registry=None,
    )


def time_store(
    store: ResourceStore, histogram: Histogram, clock: Callable[[], float] = time.perf_counter
) -> ResourceStore:
    """Times `store`'s operations into `histogram`; returns the same store."""
    for name in TIMED:
        setattr(store, name, _timed(getattr(store, name), name, histogram, clock))
    return store


def _timed(
    call: Callable[..., Awaitable[Any]],
    name: str,
    histogram: Histogram,
    clock: Callable[[], float],
) -> Callable[..., Awaitable[Any]]:
    ok, error = histogram.labels(name, "ok"), histogram.labels(name, "error")

    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            result = await call(*args, **kwargs)
        except Exception:
            error.observe(clock() - start)
            raise
        ok.observe(clock() - start)
        return result

    return timed
