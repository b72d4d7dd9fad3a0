"""Type descriptors: each resource type described once, driving REST, store, KDS and CLI.

Adding a type means adding a pydantic model of its body (meshfed/resources/models/) and a
descriptor naming it (meshfed/resources/types/), not touching the API, the store, the sync
engine and the CLI. The descriptor names its model as "module:Class" and imports it on first
use: importing the registry does not load pydantic (decision 71). The proxies do not import
it at all (decision 187).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from meshfed.resources.errors import FieldError
from meshfed.resources.model import Resource


class Scope(enum.StrEnum):
    GLOBAL = "Global"  # /{plural}[/{name}]
    MESH = "Mesh"  # /meshes/{mesh}/{plural}[/{name}]


class Mode(enum.StrEnum):
    """Which control plane a process is; decides who may write a type."""

    GLOBAL = "global"
    ZONE = "zone"


class KdsFlag(enum.StrEnum):
    """Kuma's KDS flags: which way a type travels."""

    GLOBAL_TO_ZONE = "global-to-zone"  # policies, meshes, CA secrets
    ZONE_TO_GLOBAL = "zone-to-global"  # dataplanes, ingresses, insights
    SYNCED_ACROSS_ZONES = "synced-across-zones"  # zone ingresses: zone -> global -> other zones


# Checks a resource body; `prefix` is "spec" for wrapped types, "" for top-level ones.
Validator = Callable[[dict[str, Any], str], list[FieldError]]
Column = tuple[str, Callable[[Resource], str]]


@cache
def load_model(ref: str) -> Any:
    """The model class named "package.module:Class" (imported once)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _within(field: str, prefix: str) -> bool:
    return field == prefix or field.startswith((prefix + ".", prefix + "["))


@dataclass(frozen=True)
class TypeDescriptor:
    name: str  # "MeshTrafficPermission"
    plural: str  # "meshtrafficpermissions": the REST path segment
    scope: Scope
    spec_wrapped: bool  # True: body under "spec"; False: Kuma's top-level fields
    owner: Mode  # the side whose API accepts writes (the other answers 405)
    kds: frozenset[KdsFlag] = frozenset()
    short_names: tuple[str, ...] = ()
    # The pydantic model of the body, as "module:Class" ("" for none: anything goes).
    model: str = ""
    # Runs after the model on a body: fields of Kuma's shape that meshfed refuses (the
    # sidecar does not enforce them, meshfed/policy/enforced.py); one error per mistake.
    gate: Validator | None = None
    # Written only by the system (insights): the API serves them read-only everywhere.
    system_only: bool = False
    columns: tuple[Column, ...] = field(default=())
    description: str = ""
    # For a global-to-zone type: which of its resources may leave the global (None: all).
    # GlobalSecret uses it so that only public key material ever reaches a zone.
    sync_to_zones: Callable[[Resource], bool] | None = None
    # Holds key material: only admins may read it through the API.
    secret: bool = False
    # A global-owned type a zone's API may also write (Kuma 2.6+ zone-originated policies):
    # stored there `kuma.io/origin: zone`, applied in that zone, synced up read-only
    # (meshfed/policy/origin.py, decisions 149-151).
    zone_origin: bool = False

    def validate(self, body: dict[str, Any], prefix: str) -> list[FieldError]:
        """Every problem of `body`: the model's, then the gate's (one mistake, one error: a
        gate error on or around a field the model already reported is left out)."""
        errors: list[FieldError] = []
        if self.model:
            from meshfed.resources.models.base import check

            errors = check(load_model(self.model), body, prefix)
        if self.gate is not None:
            errors += [
                e
                for e in self.gate(body, prefix)
                if not any(
                    _within(e.field, known.field) or _within(known.field, e.field)
                    for known in errors
                )
            ]
        return errors

    def parse(self, body: dict[str, Any]) -> Any:
        """`body` as its model (typed access, Kuma's defaults filled in); raises
        ValidationError if it is not valid."""
        from meshfed.resources.models.base import parse

        return parse(load_model(self.model), body, "spec" if self.spec_wrapped else "")

    def writable_on(self, mode: Mode) -> bool:
        if self.system_only:
            return False
        return self.owner == mode or (self.zone_origin and mode is Mode.ZONE)

    def to_json(self) -> dict[str, Any]:
        """The `/_resources` entry for this type."""
        return {
            "name": self.name,
            "path": self.plural,
            "scope": str(self.scope),
            "readOnly": self.system_only,
            "owner": str(self.owner),
            "kds": sorted(str(f) for f in self.kds),
            "shortNames": list(self.short_names),
            "description": self.description,
        }


class Registry:
    """All known types, looked up by name, plural or short name (case-insensitive)."""

    def __init__(self, descriptors: Iterable[TypeDescriptor]) -> None:
        self._by_name: dict[str, TypeDescriptor] = {}
        self._aliases: dict[str, TypeDescriptor] = {}
        self._by_plural: dict[str, TypeDescriptor] = {}
        for d in descriptors:
            if d.name in self._by_name:
                raise ValueError(f"duplicate resource type {d.name}")
            self._by_name[d.name] = d
            self._by_plural[d.plural] = d
            for alias in (d.name, d.plural, *d.short_names):
                self._aliases[alias.lower()] = d

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def get(self, name: str) -> TypeDescriptor:
        """By exact type name; KeyError if unknown."""
        return self._by_name[name]

    def by_plural(self, plural: str) -> TypeDescriptor | None:
        return self._by_plural.get(plural)

    def lookup(self, alias: str) -> TypeDescriptor | None:
        """By type name, plural or short name, any case (what a CLI user types)."""
        return self._aliases.get(alias.lower())

    def names(self) -> list[str]:
        return list(self._by_name)
