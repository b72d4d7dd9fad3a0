"""Kuma's `targetRef`: one model per position (top level, `to[]`, `from[]`), each naming the
kinds it accepts; which fields a kind takes is data here, checked before anything else.

Kinds Kuma has but meshfed cannot enforce (gateways, routes, MeshExternalService,
MeshMultiZoneService) get a reason naming the allowed kinds (meshfed/resources/types/targetref.py
has the tables, pydantic-free).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import Choice, Model, map_key, one_of_text, problem
from meshfed.resources.models.common import (
    Labels,
    Name,
    NonEmpty,
    SelectorTags,
)
from meshfed.resources.types.common import NOT_SUPPORTED
from meshfed.resources.types.targetref import (
    DATAPLANE,
    MESH,
    MESH_EXTERNAL_SERVICE,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    TOP_LEVEL_KINDS,
    UNSUPPORTED_KINDS,
)

ProxyType = Annotated[
    Literal["Sidecar"],
    Choice((("Gateway", f"{NOT_SUPPORTED} (there are no built-in gateways)"),)),
]

# The fields each kind takes (besides kind); sectionName and proxyTypes depend on the position.
_KIND_FIELDS: Mapping[str, frozenset[str]] = {
    MESH: frozenset({"proxyTypes"}),
    MESH_SUBSET: frozenset({"tags", "proxyTypes"}),
    MESH_SERVICE: frozenset({"name", "labels", "sectionName"}),
    MESH_SERVICE_SUBSET: frozenset({"name", "tags"}),
    DATAPLANE: frozenset({"name", "labels", "sectionName"}),
    MESH_EXTERNAL_SERVICE: frozenset({"name"}),
    "MeshMultiZoneService": frozenset({"name", "sectionName"}),
}
_NAMED_KINDS = (MESH_SERVICE, MESH_SERVICE_SUBSET, MESH_EXTERNAL_SERVICE)
_ALWAYS_REFUSED: Mapping[str, str] = {
    "namespace": f"{NOT_SUPPORTED}: meshfed runs in Universal mode, without Kubernetes namespaces",
    "mesh": f"{NOT_SUPPORTED}: a policy can only target its own mesh",
}
_PORT_NAMES = (
    f"{NOT_SUPPORTED} here: a MeshService's named port can be selected only in the to[] "
    "targetRef of a policy other than a route"
)
_OUTBOUND_SECTION = "can only be used with inbound policies (those with from or rules)"
# Selector values a MeshSubset (a proxy's own tags) must not hold: '*' and those with '/'.
_SELECTOR_ONLY = re.compile(r"\*|[a-zA-Z0-9.\-_:/]*/[a-zA-Z0-9.\-_:/]*")
_TAG_VALUE_RULE = "must be non-empty and consist of alphanumeric characters, '.', '-', '_', ':'"


class TargetRef(Model):
    """The fields of every kind (Kuma's shape); a position narrows kinds and fields."""

    kinds: ClassVar[tuple[str, ...]] = TOP_LEVEL_KINDS
    top_level: ClassVar[bool] = False
    inbound: ClassVar[bool] = False
    # `sectionName` of a MeshService: one of its named ports (to[] only, issue 17)
    service_ports: ClassVar[bool] = False

    kind: str = Field(description="Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane")
    name: Name | None = None
    tags: SelectorTags | None = None
    labels: Labels | None = None
    section_name: NonEmpty | None = None
    proxy_types: Annotated[list[ProxyType], Field(min_length=1)] | None = None
    namespace: str | None = None
    mesh: str | None = None

    @classmethod
    def _plain(cls, data: dict[str, Any]) -> bool:
        kind = data.get("kind")
        if kind not in cls.kinds or None in data.values():
            return False
        if cls.required_in(data):
            return False
        return _refused_keys(cls, kind).isdisjoint(data)

    @classmethod
    def gate(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind = data.get("kind")
        allowed = one_of_text(cls.kinds)
        if kind is None:
            return [problem(("kind",), f"is required; {allowed}")]
        if not isinstance(kind, str):
            return [problem(("kind",), f"must be a string; {allowed}", kind)]
        if kind in UNSUPPORTED_KINDS and kind not in cls.kinds:
            return [problem(("kind",), f"{kind} {UNSUPPORTED_KINDS[kind]}; {allowed}", kind)]
        if kind not in cls.kinds:
            return [problem(("kind",), f"{kind!r} is not allowed here; {allowed}", kind)]
        return []

    @classmethod
    def required_in(cls, data: dict[str, Any]) -> tuple[str, ...]:
        """A MeshService by `name` or by `labels` (Kuma 2.9+); a MeshServiceSubset by name."""
        kind = data.get("kind")
        if kind == MESH_SERVICE and "labels" in data:
            return ()
        named = (*_NAMED_KINDS, "MeshMultiZoneService")
        return ("name",) if kind in named and "name" not in data else ()

    @classmethod
    def refused_in(cls, data: dict[str, Any]) -> Mapping[str, str]:
        return _refused_for(cls, str(data.get("kind")))

    @classmethod
    def refused_for_kind(cls, kind: str) -> Mapping[str, str]:
        takes = _KIND_FIELDS[kind]
        out = {
            f: f"must not be set with kind {kind}"
            for f in ("name", "tags", "labels", "sectionName", "proxyTypes")
            if f not in takes or (f == "proxyTypes" and not cls.top_level)
        }
        if kind == MESH_SERVICE and not cls.service_ports:
            out["sectionName"] = _PORT_NAMES
        elif kind == DATAPLANE and not cls.inbound:
            out["sectionName"] = _OUTBOUND_SECTION
        return {**out, **_ALWAYS_REFUSED}

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind = data.get("kind")
        out: list[InitErrorDetails] = []
        if kind in (DATAPLANE, MESH_SERVICE) and "name" in data and "labels" in data:
            out.append(problem(("labels",), "either labels or name must be specified"))
        tags = data.get("tags")
        if kind == MESH_SUBSET and isinstance(tags, dict):
            for k, v in tags.items():  # a proxy's own tags: no '*' or '/' as a selector has
                if isinstance(v, str) and _SELECTOR_ONLY.fullmatch(v):
                    out.append(problem(("tags", map_key(str(k))), _TAG_VALUE_RULE))
        return out


@cache
def _refused_for(cls: type[TargetRef], kind: str) -> Mapping[str, str]:
    return cls.refused_for_kind(kind)


@cache
def _refused_keys(cls: type[TargetRef], kind: str) -> frozenset[str]:
    return frozenset(_refused_for(cls, kind))


class TopLevelRef(TargetRef):
    """Which proxies a policy with only `to[]` applies to."""

    top_level = True
    kind: Literal["Mesh", "MeshSubset", "MeshService", "MeshServiceSubset", "Dataplane"]


class InboundTopLevelRef(TopLevelRef):
    """Which proxies a policy with `from[]` or `rules[]` applies to (may pick one inbound)."""

    inbound = True


class PermissionTopLevelRef(InboundTopLevelRef):
    """A MeshTrafficPermission's: its proxies, or a MeshExternalService by name (the zone
    egress enforces its `from[]`, Kuma 2.10+)."""

    kinds = (*TOP_LEVEL_KINDS, MESH_EXTERNAL_SERVICE)
    kind: Literal[  # type: ignore[assignment]
        "Mesh", "MeshSubset", "MeshService", "MeshServiceSubset", "Dataplane", "MeshExternalService"
    ]


class ToRef(TargetRef):
    """The destination of a `to[]` entry."""

    kinds: ClassVar[tuple[str, ...]] = (MESH, MESH_SERVICE, "MeshMultiZoneService")
    service_ports = True
    kind: Literal["Mesh", "MeshService", "MeshMultiZoneService"]


class OutboundToRef(ToRef):
    """The destination of a `to[]` entry of a policy the outbound to a MeshExternalService
    enforces too (MeshTimeout, MeshRetry, MeshCircuitBreaker, MeshHealthCheck,
    MeshLoadBalancingStrategy: zone_cp/external_outbounds.py)."""

    kinds = (*ToRef.kinds, MESH_EXTERNAL_SERVICE)
    kind: Literal[  # type: ignore[assignment]
        "Mesh", "MeshService", "MeshMultiZoneService", "MeshExternalService"
    ]


class FromMeshRef(TargetRef):
    """The callers of a `from[]` entry of MeshTimeout and MeshCircuitBreaker."""

    kinds = (MESH,)
    kind: Literal["Mesh"]


class CallerRef(TargetRef):
    """The callers of a MeshTrafficPermission `from[]` entry."""

    kinds = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET)
    kind: Literal["Mesh", "MeshSubset", "MeshService", "MeshServiceSubset"]
