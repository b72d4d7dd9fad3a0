"""Checks every backend applies to a `write_batch` the same way, before anything is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshfed.resources.model import Resource
from meshfed.store._common import check_key
from meshfed.store.base import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Requirement,
    StoreKey,
)


def check_batch(
    puts: Sequence[Resource],
    deletes: Sequence[StoreKey],
    expected: Mapping[StoreKey, str | None] | None,
    require: Sequence[Requirement] = (),
) -> None:
    """Valid keys, each at most once: a key both put and deleted (or written and required,
    which `expected` says better) has no single meaning."""
    seen: set[StoreKey] = set()
    for key in [*(res.key for res in puts), *deletes, *(r[:3] for r in require)]:
        check_key(*key)
        if key in seen:
            type_, mesh, name = key
            raise ValueError(f"{type_} {name!r} (mesh {mesh!r}) appears twice in one batch")
        seen.add(key)
    written = seen - {r[:3] for r in require}
    for key in expected or {}:
        if key not in written:
            type_, mesh, name = key
            raise ValueError(
                f"expected version given for {type_} {name!r} (mesh {mesh!r}), "
                "which the batch neither puts nor deletes"
            )


def check_expected(key: StoreKey, expected: str | None, actual: str | None) -> None:
    """Raises the error `create`/`update` would raise when the stored version is not the
    expected one (None on either side: absent)."""
    if expected == actual:
        return
    type_, mesh, name = key
    if actual is None:
        raise NotFoundError(type_, mesh, name)
    if expected is None:
        raise AlreadyExistsError(type_, mesh, name)
    raise ConflictError(type_, mesh, name, expected, actual)


def check_required(requirement: Requirement, actual: str | None) -> None:
    """Raises ConflictError unless the required key is stored at the required version."""
    type_, mesh, name, version = requirement
    if actual != version:
        raise ConflictError(type_, mesh, name, version, actual)
