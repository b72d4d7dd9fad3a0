"""Where the etcd store puts things, and how a resource is written into a key's value.

Pure functions, no I/O, so the layout is tested directly and documented in one place
(the layout itself is described in `meshfed.store.etcd`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from meshfed.resources.model import Meta, Resource

LAYOUT_VERSION = 1
GLOBAL_MESH_PART = "_"  # stands for mesh "" (global-scoped types) in a key


def escape_part(part: str) -> str:
    """A key component that cannot contain the separator; "_" alone is reserved for mesh ""."""
    out = part.replace("%", "%25").replace("/", "%2F")
    return "%5F" if out == GLOBAL_MESH_PART else out


def mesh_part(mesh: str) -> str:
    return GLOBAL_MESH_PART if mesh == "" else escape_part(mesh)


def prefix_range_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's convention)."""
    raw = bytearray(prefix)
    for i in reversed(range(len(raw))):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"  # all 0xff: every key from `prefix` on


class KeyLayout:
    """The keys of one store, all under one prefix (several stores can share a cluster)."""

    def __init__(self, prefix: str) -> None:
        root = prefix.rstrip("/")
        if not root:
            raise ValueError(f"etcd key prefix must not be empty or '/', got {prefix!r}")
        self.root = root
        self.meta_key = f"{root}/meta".encode()
        self.head_key = f"{root}/head".encode()
        self.resources = f"{root}/resources/".encode()

    def type_prefix(self, type_: str) -> bytes:
        return self.resources + f"{escape_part(type_)}/".encode()

    def mesh_prefix(self, type_: str, mesh: str) -> bytes:
        return self.type_prefix(type_) + f"{mesh_part(mesh)}/".encode()

    def key(self, type_: str, mesh: str, name: str) -> bytes:
        return self.mesh_prefix(type_, mesh) + escape_part(name).encode()

    def parse(self, key: bytes) -> tuple[str, str, str]:
        """(type, mesh, name) of a resource key; ValueError if it is not one of ours."""
        if not key.startswith(self.resources):
            raise ValueError(f"key {key!r} is not under {self.resources!r}")
        parts = key[len(self.resources) :].decode().split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"key {key!r} is not <type>/<mesh>/<name>")
        type_, mesh, name = parts
        return unquote(type_), "" if mesh == GLOBAL_MESH_PART else unquote(mesh), unquote(name)


def encode_value(res: Resource) -> bytes:
    """The stored record. Type, mesh and name are repeated for people reading etcd directly;
    the key stays the authority for them."""
    record = {
        "type": res.type,
        "mesh": res.meta.mesh,
        "name": res.meta.name,
        "labels": res.meta.labels,
        "creationTime": res.meta.creation_time,
        "modificationTime": res.meta.modification_time,
        "spec": res.spec,
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _field(record: dict[str, Any], name: str, kind: type) -> Any:
    value = record.get(name)
    if not isinstance(value, kind):
        raise ValueError(f"field {name!r} must be a {kind.__name__}")
    return value


def decode_value(key: tuple[str, str, str], value: bytes, version: str) -> Resource:
    """Raises ValueError naming what is wrong, so a corrupt key is reported, not guessed at."""
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not a JSON document: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    labels = _field(record, "labels", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("labels must map strings to strings")
    type_, mesh, name = key
    meta = Meta(
        name=name,
        mesh=mesh,
        labels=dict(labels),
        creation_time=_field(record, "creationTime", str),
        modification_time=_field(record, "modificationTime", str),
        version=version,
    )
    return Resource(type_, meta, _field(record, "spec", dict))


def encode_layout_marker() -> bytes:
    return json.dumps({"layout": LAYOUT_VERSION, "by": "meshfed"}).encode()


def check_layout_marker(value: bytes) -> None:
    try:
        layout = json.loads(value).get("layout")
    except (UnicodeDecodeError, ValueError, AttributeError):
        layout = None
    if layout != LAYOUT_VERSION:
        raise ValueError(
            f"the prefix holds data in an unknown layout ({value[:100]!r}); this version "
            f"of meshfed reads layout {LAYOUT_VERSION} only"
        )
