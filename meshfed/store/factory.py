"""Picks a store backend from configuration (`--store`, `MESHFED_STORE`, ...).

The store options are declared here once (`StoreKind`, the `EtcdSettings` group), so global-cp
and zone-cp spell, default and document them the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from meshfed.config import Option, choice_parser, parse_path, parse_str
from meshfed.store._etcd_conn import parse_endpoints
from meshfed.store.base import ResourceStore
from meshfed.store.etcd import DEFAULT_PREFIX, EtcdStore
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite", "etcd")


StoreKind = Annotated[
    str,
    Option(
        choice_parser(*STORE_KINDS),
        "sqlite",
        "Resource store: sqlite (persists under --data-dir), etcd (shared by several "
        "replicas; see --etcd-endpoints) or memory (lost on exit)",
        metavar="KIND",
    ),
]


def data_dir_option(default: str) -> Option:
    """`--data-dir`, with each program's own default directory."""
    return Option(
        parse_path, default, "Directory of the SQLite store (created if missing)", metavar="DIR"
    )


def parse_etcd_endpoints(value: Any) -> str:
    """Checked here, so a typo stops the program at start with the reason."""
    text = parse_str(value).strip()
    parse_endpoints(text)  # raises ValueError naming the bad endpoint
    return ",".join(part.strip() for part in text.split(",") if part.strip())


def _optional_str(value: Any) -> str | None:
    text = parse_str(value) if value is not None else ""
    return text or None


def _optional_path(value: Any) -> Path | None:
    text = _optional_str(value)
    return Path(text) if text else None


@dataclass(frozen=True)
class EtcdSettings:
    """How to reach etcd (`--store etcd`): a group of options of both control planes."""

    etcd_endpoints: Annotated[
        str,
        Option(
            parse_etcd_endpoints,
            "http://127.0.0.1:2379",
            "etcd members (with --store etcd), comma-separated http(s)://HOST:PORT; calls fail "
            "over between them",
            metavar="URLS",
        ),
    ]
    etcd_prefix: Annotated[
        str | None,
        Option(
            _optional_str,
            "",
            f"Key prefix of this store in etcd (default: {DEFAULT_PREFIX} for the global, "
            f"{DEFAULT_PREFIX}-zones/ZONE for a zone), so several stores can share one cluster",
            metavar="PREFIX",
        ),
    ]
    etcd_username: Annotated[
        str | None,
        Option(
            _optional_str,
            "",
            "etcd user (with --etcd-password); empty: no authentication",
            metavar="USER",
        ),
    ]
    etcd_password: Annotated[
        str | None,
        Option(
            _optional_str,
            "",
            "Password of --etcd-username (prefer the environment variable: flags show in ps)",
            metavar="PASSWORD",
        ),
    ]
    etcd_ca_file: Annotated[
        Path | None,
        Option(
            _optional_path,
            "",
            "PEM file of the CA that signed etcd's certificate (https:// endpoints)",
            metavar="FILE",
        ),
    ]
    etcd_cert_file: Annotated[
        Path | None,
        Option(
            _optional_path,
            "",
            "PEM client certificate for etcd (with --etcd-key-file)",
            metavar="FILE",
        ),
    ]
    etcd_key_file: Annotated[
        Path | None,
        Option(_optional_path, "", "PEM key of --etcd-cert-file", metavar="FILE"),
    ]


async def open_configured_store(
    kind: str,
    data_dir: Path | None,
    etcd: EtcdSettings,
    default_prefix: str = DEFAULT_PREFIX,
    *,
    key_index: Collection[str] = (),
) -> ResourceStore:
    """`open_store` with a program's option values."""
    return await open_store(
        kind,
        data_dir,
        key_index=key_index,
        endpoints=etcd.etcd_endpoints,
        prefix=etcd.etcd_prefix or default_prefix,
        username=etcd.etcd_username,
        password=etcd.etcd_password,
        ca_file=etcd.etcd_ca_file,
        cert_file=etcd.etcd_cert_file,
        key_file=etcd.etcd_key_file,
    )


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
    key_index: Collection[str] = (),
) -> ResourceStore:
    """Opens a store of `kind`; `data_dir` is required by sqlite, `endpoints` by etcd (the
    other keyword arguments are etcd's: key prefix, user and password, TLS files).
    `key_index`: sqlite's (`SqliteStore.open`); the others have other writers (etcd) or no
    thread to spare a trip to (memory)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory (e.g. --data-dir)")
        return await SqliteStore.open(data_dir, key_index=key_index)
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
