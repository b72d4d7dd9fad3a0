"""Rules every backend applies the same way: key checks, stamping, filters and paging offsets.

Keeping them here means the memory, SQLite and etcd stores cannot drift apart on what a
version, a creation time, a list filter or a page offset means.
"""

from __future__ import annotations

import abc
import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass

from meshfed.resources.model import Resource, now_rfc3339
from meshfed.store.base import InvalidOffsetError, ListPage, ResourceStore

_OFFSET_TAG = "k1"  # lets the offset format change later without misreading old ones


def check_key(type_: str, mesh: str, name: str) -> None:
    if not type_:
        raise ValueError("resource type must not be empty")
    if not name:
        raise ValueError(f"{type_} name must not be empty")
    if mesh is None:  # a frequent slip: mesh is "" for global-scoped types, never None
        raise ValueError(f"{type_} {name!r}: mesh must be a string ('' for global types)")


def check_mesh(mesh: str) -> None:
    if not mesh:
        # "" would select every global-scoped resource: never what a mesh deletion means.
        raise ValueError("delete_mesh_scoped needs a mesh name")


def check_size(size: int | None) -> None:
    if size is not None and size < 1:
        raise ValueError(f"page size must be >= 1, got {size}")


def stamped_new(resource: Resource, revision: int) -> Resource:
    """A copy ready to store as new: the caller's creation time is kept only if it set one."""
    out = resource.clone()
    now = now_rfc3339()
    out.meta.creation_time = resource.meta.creation_time or now
    out.meta.modification_time = now
    out.meta.version = str(revision)
    return out


def stamped_update(resource: Resource, stored: Resource, revision: int) -> Resource:
    """A copy of the caller's labels and spec that keeps the stored creation time."""
    out = resource.clone()
    out.meta.creation_time = stored.meta.creation_time
    out.meta.modification_time = now_rfc3339()
    out.meta.version = str(revision)
    return out


def encode_offset(mesh: str, name: str) -> str:
    """The position after (mesh, name): stays right when items are added or removed meanwhile."""
    raw = json.dumps([_OFFSET_TAG, mesh, name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_offset(offset: str) -> tuple[str, str]:
    bad = InvalidOffsetError(
        f"invalid offset {offset[:64]!r}: use the 'next' value returned with the previous page"
    )
    try:
        raw = base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[0] != _OFFSET_TAG
        or not all(isinstance(v, str) and _is_utf8(v) for v in value[1:])
    ):
        raise bad
    return value[1], value[2]


def _is_utf8(text: str) -> bool:
    """False for JSON's lone surrogates ("\\ud800"): no stored name has one, and a backend that
    encodes the key (SQLite, etcd) would fail on it with an error that is not the client's."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A `list` call whose size and offset are already checked, as each backend answers it."""

    type: str
    mesh: str | None  # None: across meshes
    name_contains: str | None
    labels: dict[str, str] | None
    size: int | None  # None: everything
    after: tuple[str, str] | None  # the decoded offset: the page starts after this (mesh, name)

    def matches(self, resource: Resource) -> bool:
        """Name and labels only: each backend already reads just the type (and mesh) asked."""
        if self.name_contains and self.name_contains not in resource.meta.name:
            return False
        if self.labels:
            have = resource.meta.labels
            return all(have.get(k) == v for k, v in self.labels.items())
        return True


class CheckedListStore(ResourceStore):
    """Checks `list` arguments in one place, so a bad size or offset fails the same way (and
    before any I/O) on every backend; backends answer the checked `ListQuery`."""

    async def list(
        self,
        type_: str,
        mesh: str | None = None,
        *,
        name_contains: str | None = None,
        labels: dict[str, str] | None = None,
        size: int | None = None,
        offset: str | None = None,
    ) -> ListPage:
        check_size(size)
        after = None if offset is None else decode_offset(offset)
        return await self._list(ListQuery(type_, mesh, name_contains, labels, size, after))

    @abc.abstractmethod
    async def _list(self, query: ListQuery) -> ListPage:
        """One page of the query's matches, sorted by (mesh, name); items are the caller's."""


def _position(resource: Resource) -> tuple[str, str]:
    return resource.meta.mesh, resource.meta.name


def page_of(candidates: Iterable[Resource], query: ListQuery) -> ListPage:
    """One page of the candidates the query matches, for backends that filter in Python.
    Items are copies."""
    matching = sorted((r for r in candidates if query.matches(r)), key=_position)
    after, size = query.after, query.size
    rest = matching if after is None else [r for r in matching if _position(r) > after]
    if size is None or len(rest) <= size:
        return ListPage([r.clone() for r in rest], len(matching), None)
    items = rest[:size]
    last = items[-1].meta
    return ListPage([r.clone() for r in items], len(matching), encode_offset(last.mesh, last.name))
