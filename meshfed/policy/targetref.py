"""Which inbounds of a dataplane a policy's top-level `targetRef` selects (Kuma's semantics).

- `Mesh` (or no targetRef): the whole proxy.
- `MeshSubset{tags}`: the inbounds whose tags include all `tags` (no tags: the whole proxy).
- `MeshService{name}`: the inbounds whose `kuma.io/service` is `name`;
  `MeshService{labels}` (Kuma 2.9+): the inbounds whose service has all those labels.
- `MeshServiceSubset{name, tags}`: those of them whose tags also include `tags`.
- `Dataplane{name}` / `Dataplane{labels}` / `Dataplane{}`: the proxy with that name (its
  `kuma.io/display-name` label if it has one, as on a global), with all those labels, or any
  proxy; `sectionName` narrows to the inbound with that name, or else to the unnamed one with
  that port (kuma.io/docs/2.14.x/policies/introduction/, "Using a sectionName").
- `proxyTypes`: every meshfed dataplane is a `Sidecar`.

An inbound's tags for matching include `kuma.io/zone: <its zone>`, as in Kuma, so that
`MeshSubset{kuma.io/zone: east}` selects every proxy of zone `east`. A selector value `*`
matches any value of a present tag.

A service's labels are those Kuma's MeshService generator gives the MeshService of a
Universal zone (`service_labels`): `kuma.io/display-name` (its `kuma.io/service` name),
`kuma.io/mesh`, `kuma.io/zone` (each zone it has instances in: a selector naming one of them
matches), `kuma.io/origin: zone`, `kuma.io/env: universal` and `kuma.io/managed-by:
meshservice-generator`. The instances' tags are not labels (the generator does not copy
them), and Kubernetes labels (`k8s.kuma.io/namespace`, ...) never match in Universal.

Outbound (`to`) policies apply to the proxy when at least one inbound is selected; inbound
(`from`, `rules`) policies apply to the selected inbounds only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshfed.resources.types.common import SERVICE_TAG, as_list, dig
from meshfed.resources.types.targetref import (
    DATAPLANE,
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
)

# Priority of a targetRef kind, least specific first (Kuma's order; used at every position).
KIND_RANK: Mapping[str, int] = {
    MESH: 0,
    MESH_SUBSET: 1,
    MESH_SERVICE: 2,
    MESH_SERVICE_SUBSET: 3,
    DATAPLANE: 4,
    "MeshMultiZoneService": 2,  # a to[] destination, as specific as a MeshService (issue 17)
}
WILDCARD = "*"

# label -> the values a service has for it (several zones for kuma.io/zone)
ServiceLabels = Mapping[str, frozenset[str]]
LABEL_MESH = "kuma.io/mesh"


def service_labels(mesh: str, service: str, zones: Iterable[str]) -> ServiceLabels:
    """The labels of `service`'s MeshServices in `zones` (see the module docstring)."""
    return {
        LABEL_DISPLAY_NAME: frozenset({service}),
        LABEL_MESH: frozenset({mesh}),
        LABEL_ZONE: frozenset(zones),
        "kuma.io/origin": frozenset({"zone"}),
        "kuma.io/env": frozenset({"universal"}),
        "kuma.io/managed-by": frozenset({"meshservice-generator"}),
    }


def labels_select(selector: Any, labels: ServiceLabels) -> bool:
    """Every selector label is one of the service's values for it (any value for `*`)."""
    if not isinstance(selector, dict):
        return False
    for key, want in selector.items():
        have = labels.get(key, frozenset())
        if not have or (want != WILDCARD and want not in have):
            return False
    return True


def selects_service(ref: dict[str, Any], service: str, labels: ServiceLabels | None) -> bool:
    """A MeshService targetRef selects `service`: by `name`, or by `labels` (matched
    against `labels`, or the name alone when the caller knows no more)."""
    if isinstance(ref.get("name"), str):
        return bool(ref.get("name") == service)
    if labels is None:
        labels = {LABEL_DISPLAY_NAME: frozenset({service})}
    return labels_select(ref.get("labels"), labels)


@dataclass(frozen=True, slots=True)
class InboundView:
    """One inbound as policies see it."""

    index: int  # position in networking.inbound
    name: str  # "" when unnamed
    port: int
    service: str
    tags: Mapping[str, str]  # with kuma.io/zone added


@dataclass(frozen=True, slots=True)
class DataplaneView:
    name: str  # display name
    mesh: str
    labels: Mapping[str, str]
    inbounds: tuple[InboundView, ...]

    @property
    def all_inbounds(self) -> frozenset[int]:
        return frozenset(i.index for i in self.inbounds)


def view_of(dataplane: Resource, zone: str) -> DataplaneView:
    """The parts of a Dataplane that targetRefs look at; malformed inbounds are left out."""
    inbounds: list[InboundView] = []
    for index, raw in enumerate(as_list(dig(dataplane.spec, "networking", "inbound"))):
        tags = dig(raw, "tags")
        port = dig(raw, "port")
        if not isinstance(tags, dict) or not isinstance(port, int):
            continue
        service = tags.get(SERVICE_TAG)
        if not isinstance(service, str):
            continue
        effective = {str(k): str(v) for k, v in tags.items()}
        effective.setdefault(LABEL_ZONE, zone)
        name = dig(raw, "name")
        inbounds.append(
            InboundView(index, name if isinstance(name, str) else "", port, service, effective)
        )
    labels = dataplane.meta.labels
    return DataplaneView(
        name=labels.get(LABEL_DISPLAY_NAME, dataplane.meta.name),
        mesh=dataplane.meta.mesh,
        labels=dict(labels),
        inbounds=tuple(inbounds),
    )


def kind_of(ref: Any) -> str:
    """The kind of a targetRef; an absent one means Mesh (Kuma's default)."""
    if not isinstance(ref, dict):
        return MESH
    kind = ref.get("kind")
    return kind if isinstance(kind, str) else MESH


def kind_rank(ref: Any) -> int:
    """Unknown kinds (refused by validation) rank lowest rather than raising."""
    return KIND_RANK.get(kind_of(ref), -1)


def tags_match(selector: Any, tags: Mapping[str, str]) -> bool:
    """Every selector tag is present in `tags` with that value (or any value for `*`)."""
    if selector is None:
        return True
    if not isinstance(selector, dict):
        return False
    for key, want in selector.items():
        have = tags.get(key)
        if have is None or (want != WILDCARD and have != want):
            return False
    return True


def _proxy_types_match(ref: dict[str, Any]) -> bool:
    types = ref.get("proxyTypes")
    return not isinstance(types, list) or not types or "Sidecar" in types


def _section(ref: dict[str, Any], dp: DataplaneView, chosen: frozenset[int]) -> frozenset[int]:
    section = ref.get("sectionName")
    if not isinstance(section, str):
        return chosen
    by_name = {i.index for i in dp.inbounds if i.name == section}
    if by_name:
        return chosen & by_name
    # Kuma: a number names the port of an inbound whose name is unset
    return chosen & {i.index for i in dp.inbounds if not i.name and str(i.port) == section}


def _inbound_labels(dp: DataplaneView, inbound: InboundView) -> ServiceLabels:
    return service_labels(dp.mesh, inbound.service, (inbound.tags.get(LABEL_ZONE, ""),))


def selected_inbounds(ref: Any, dp: DataplaneView) -> frozenset[int]:
    """Indices of the inbounds `ref` selects; empty when it does not select this proxy."""
    if ref is None:
        return dp.all_inbounds
    if not isinstance(ref, dict) or not _proxy_types_match(ref):
        return frozenset()
    kind = kind_of(ref)
    if kind == MESH:
        return dp.all_inbounds
    if kind == MESH_SUBSET:
        return frozenset(i.index for i in dp.inbounds if tags_match(ref.get("tags"), i.tags))
    if kind == MESH_SERVICE:
        return frozenset(
            i.index for i in dp.inbounds if selects_service(ref, i.service, _inbound_labels(dp, i))
        )
    if kind == MESH_SERVICE_SUBSET:
        name = ref.get("name")
        return frozenset(
            i.index
            for i in dp.inbounds
            if i.service == name and tags_match(ref.get("tags"), i.tags)
        )
    if kind == DATAPLANE:
        name = ref.get("name")
        if isinstance(name, str) and name != dp.name:
            return frozenset()
        if not tags_match(ref.get("labels"), dp.labels):
            return frozenset()
        return _section(ref, dp, dp.all_inbounds)
    return frozenset()
