"""A store cache with one reader, for a part that runs without its program's shared cache
(its own tests, benchmarks): `StoreMirror(store, types, encode)` is a `CacheView` that owns
its `StoreCache`, started and stopped with it. Programs share one cache per process
(`meshfed.store.cache`, decision 80).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from meshfed.resources.model import Resource
from meshfed.store.base import ResourceStore
from meshfed.store.cache import CacheView, MirrorListener, StoreCache

__all__ = ["MirrorListener", "StoreMirror", "encoded_view", "resource_view"]

F = TypeVar("F")


class StoreMirror(CacheView[F]):
    """A CacheView over a cache of its own (one watch of `types`)."""

    def __init__(
        self, store: ResourceStore, types: Iterable[str], encode: Callable[[Resource], F]
    ) -> None:
        cache = StoreCache(store, types)
        super().__init__(cache, cache.types, encode)

    async def stop(self) -> None:
        await super().stop()
        await self._cache.stop()


def _identity(res: Resource) -> Resource:
    return res


def resource_view(
    store: ResourceStore, types: Iterable[str], cache: StoreCache | None
) -> CacheView[Resource]:
    """The process's cache's view of `types`, or (no cache given: a part run on its own) a
    mirror of its own."""
    if cache is not None:
        return cache.subscribe(types)
    return StoreMirror(store, types, _identity)


def encoded_view(
    store: ResourceStore,
    types: Iterable[str],
    encode: Callable[[Resource], F],
    cache: StoreCache | None,
) -> CacheView[F]:
    """Like `resource_view`, with each resource in the reader's encoded form."""
    if cache is not None:
        return cache.subscribe(types, encode)
    return StoreMirror(store, types, encode)
