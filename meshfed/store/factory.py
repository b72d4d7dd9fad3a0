"""Picks a store backend from configuration (`--store-type`, `MESHFED_STORE_TYPE`, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meshfed.store.base import ResourceStore
from meshfed.store.etcd import DEFAULT_PREFIX, EtcdStore
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite", "etcd")


async def open_store(
    kind: str,
    data_dir: Path | None,
    *,
    endpoints: str | Sequence[str] | None = None,
    prefix: str = DEFAULT_PREFIX,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ResourceStore:
    """Opens a store of `kind`; `data_dir` is required by sqlite, `endpoints` by etcd (the
    other keyword arguments are etcd's: key prefix, user and password, TLS files)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory (e.g. --data-dir)")
        return await SqliteStore.open(data_dir)
    if kind == "etcd":
        if not endpoints:
            raise ValueError(
                "the etcd store needs endpoints (e.g. --etcd-endpoints http://127.0.0.1:2379)"
            )
        return await EtcdStore.open(
            endpoints,
            prefix=prefix,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
    raise ValueError(f"unknown store type {kind!r}; expected one of: {', '.join(STORE_KINDS)}")
