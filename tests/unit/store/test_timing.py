"""Store latencies: every timed operation lands in the histogram, failures as errors."""

from __future__ import annotations

import pytest

from meshfed.store.base import NotFoundError
from meshfed.store.memory import MemoryStore
from meshfed.store.timing import store_histogram, time_store
from tests.unit.store.test_conformance import POLICY, mk


def count(histogram: object, operation: str, result: str = "ok") -> float:
    for metric in histogram.collect():  # type: ignore[attr-defined]
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels == {
                "operation": operation,
                "result": result,
            }:
                return float(sample.value)
    return 0.0


async def test_operations_are_timed_and_the_store_keeps_its_class() -> None:
    histogram = store_histogram()
    store = time_store(MemoryStore(), histogram)
    assert isinstance(store, MemoryStore)
    await store.create(mk("a"))  # a write_batch underneath
    await store.get(POLICY, "default", "a")
    await store.list(POLICY)
    await store.revision()
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "default", "missing")
    assert count(histogram, "write_batch") == 1
    assert count(histogram, "get") == 1
    assert count(histogram, "get", "error") == 1
    assert count(histogram, "list") == 1
    assert count(histogram, "revision") == 1
