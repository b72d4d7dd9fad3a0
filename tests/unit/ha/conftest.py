"""Real etcd for the HA unit tests: one member for most, a 3-member cluster where members die."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from meshfed.store.etcd import EtcdStore
from tests.etcd_cluster import EtcdCluster
from tests.unit.store.etcd_server import EtcdServer

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    root = tmp_path_factory.mktemp("ha-etcd")
    server = EtcdServer(root / "data", root)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    root = tmp_path_factory.mktemp("ha-etcd-cluster")
    cluster = EtcdCluster(root, root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test: tests sharing one etcd cannot see each other."""
    return f"/meshfed-ha-test/{next(_prefixes)}"


@pytest.fixture
async def etcd_stores(etcd_server: EtcdServer, prefix: str) -> AsyncIterator[list[EtcdStore]]:
    """Two stores on one prefix: what two replicas of a control plane share."""
    stores = [await EtcdStore.open(etcd_server.endpoint, prefix=prefix) for _ in range(2)]
    yield stores
    for store in stores:
        await store.close()
