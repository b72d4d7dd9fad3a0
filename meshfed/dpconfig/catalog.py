"""The services a zone can reach, and where: its own healthy dataplane inbounds plus what
other zones' ingresses advertise. Pure: built from resources, no store, no I/O.

- Local instances: every inbound of an online Dataplane (`online`, a predicate the caller
  supplies, e.g. "its config stream is connected") whose `health.ready` is not false. The
  endpoint is the sidecar's inbound (`inbound.address` or `networking.address`, `port`).
- Remote zones: every ZoneIngress of another zone (its `zone` set and not ours) that passes
  `ingress_online`, one endpoint per ingress and service at its advertised address and port
  (or its address and port), weighted by the instance count it advertises.

`available_services` computes a zone's own ZoneIngress `availableServices` from the same
local instances, in Kuma's shape (grouped by mesh and tags, with instance counts). meshfed
adds one tag, `meshfed.io/service-port`, the application port of the instances, so other
zones know which port to listen on for a service they only reach through an ingress.

The port an outbound listens on for a service (`ServiceEntry.port`) is its instances'
`servicePort` (the application's port: `backend.mesh:8080` reaches apps listening on 8080),
the most common one across zones when they differ (ties: the lowest). Picking an endpoint is
the sidecar's job; the catalog only lists the choices.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.models.proxies import DataplaneSpec, ZoneIngressSpec
from meshfed.resources.typed import spec_as
from meshfed.resources.types.common import PROTOCOL_TAG, SERVICE_TAG

SERVICE_PORT_TAG = "meshfed.io/service-port"
DEFAULT_SERVICE_ADDRESS = "127.0.0.1"

Predicate = Callable[[Resource], bool]


def _always(resource: Resource) -> bool:
    return True


class VipKey(NamedTuple):
    """A VIP's owner: a service of a mesh, pinned to one zone when `zone` is set."""

    mesh: str
    service: str
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class LocalInstance:
    dataplane: str
    inbound: int  # index in networking.inbound
    address: str  # the sidecar's inbound address
    port: int  # the sidecar's inbound port
    service_address: str  # the application behind it
    service_port: int
    tags: Mapping[str, str]  # the inbound's tags with kuma.io/zone
    name: str = ""  # the inbound's `name` (a MeshService `targetPort` may name it)


@dataclass(frozen=True, slots=True)
class RemoteIngress:
    zone: str
    ingress: str  # the ZoneIngress's name
    address: str  # where to dial it
    port: int
    instances: int  # instances of the service behind it


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    mesh: str
    service: str
    local: tuple[LocalInstance, ...]
    remote: tuple[RemoteIngress, ...]
    port: int | None  # the application port callers use; None: no instance says
    # kuma.io/protocol values of its instances in every zone ("tcp" for untagged ones)
    protocols: frozenset[str] = frozenset()

    @property
    def protocol(self) -> str:
        """The protocol callers speak to it: the instances' one when they all agree, else
        "tcp" (Kuma expects every instance of a service to declare the same protocol)."""
        return next(iter(self.protocols)) if len(self.protocols) == 1 else "tcp"

    def zones(self, local_zone: str) -> list[str]:
        """The zones with instances of the service, the local one first."""
        remote = sorted({r.zone for r in self.remote} - {local_zone})
        return ([local_zone] if self.local else []) + remote


class Catalog:
    """(mesh, service) -> ServiceEntry for one zone; immutable once built."""

    def __init__(self, zone: str, entries: Iterable[ServiceEntry]) -> None:
        self.zone = zone
        self._entries = {(e.mesh, e.service): e for e in entries}

    @classmethod
    def of_entries(cls, zone: str, entries: dict[tuple[str, str], ServiceEntry]) -> Catalog:
        """A catalog over an already keyed dict, which it then owns (no copy)."""
        catalog = cls(zone, ())
        catalog._entries = entries
        return catalog

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ServiceEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: (e.mesh, e.service)))

    def get(self, mesh: str, service: str) -> ServiceEntry | None:
        return self._entries.get((mesh, service))

    def services(self, mesh: str) -> list[ServiceEntry]:
        return [e for e in self if e.mesh == mesh]

    def vip_keys(self) -> list[VipKey]:
        """Every VIP the zone should hold: one per service, one more per zone that has it
        (for `<service>.<zone>.mesh`)."""
        keys: list[VipKey] = []
        for e in self:
            keys.append(VipKey(e.mesh, e.service))
            keys += [VipKey(e.mesh, e.service, z) for z in e.zones(self.zone)]
        return keys


def _inbounds(dataplane: Resource, zone: str) -> Iterator[LocalInstance]:
    """The healthy inbounds of one dataplane (none if its body does not fit the model)."""
    spec = spec_as(dataplane, DataplaneSpec)
    if spec is None:
        return
    networking = spec.networking
    for index, inbound in enumerate(networking.inbound or ()):
        if inbound.health is not None and inbound.health.ready is False:
            continue
        effective = dict(inbound.tags)
        effective.setdefault(LABEL_ZONE, zone)
        yield LocalInstance(
            dataplane=dataplane.meta.name,
            inbound=index,
            address=inbound.address or networking.address,
            port=inbound.port,
            service_address=(
                DEFAULT_SERVICE_ADDRESS
                if inbound.service_address is None
                else inbound.service_address
            ),
            service_port=inbound.port if inbound.service_port is None else inbound.service_port,
            tags=effective,
            name=inbound.name or "",
        )


def local_instances(
    dataplanes: Iterable[Resource], zone: str, online: Predicate = _always
) -> dict[tuple[str, str], list[LocalInstance]]:
    """(mesh, service) -> healthy inbounds of the online dataplanes, in a stable order."""
    out: dict[tuple[str, str], list[LocalInstance]] = {}
    for dp in dataplanes:
        if dp.type != "Dataplane" or not online(dp):
            continue
        for inst in _inbounds(dp, zone):
            out.setdefault((dp.meta.mesh, inst.tags[SERVICE_TAG]), []).append(inst)
    for instances in out.values():
        instances.sort(key=_instance_order)
    return out


def available_services(
    dataplanes: Iterable[Resource], zone: str, online: Predicate = _always
) -> list[dict[str, Any]]:
    """The zone's ZoneIngress `availableServices`: instances grouped by mesh and tags."""
    counts: Counter[AvailableKey] = Counter()
    for (mesh, _service), instances in local_instances(dataplanes, zone, online).items():
        for inst in instances:
            counts[_available_key(mesh, inst)] += 1
    return _available_list(counts)


AvailableKey = tuple[str, tuple[tuple[str, str], ...]]  # (mesh, sorted tags with the port)


def _available_key(mesh: str, inst: LocalInstance) -> AvailableKey:
    tags = {**inst.tags, SERVICE_PORT_TAG: str(inst.service_port)}
    return (mesh, tuple(sorted(tags.items())))


def _available_order(key: AvailableKey) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """By mesh, then service, then tags."""
    return (key[0], dict(key[1])[SERVICE_TAG], key[1])


def _available_list(counts: Mapping[AvailableKey, int]) -> list[dict[str, Any]]:
    return [
        {"tags": dict(tags), "instances": counts[(mesh, tags)], "mesh": mesh}
        for mesh, tags in sorted(counts, key=_available_order)
    ]


def _dial_address(ingress: ZoneIngressSpec) -> tuple[str, int]:
    net = ingress.networking
    if net.advertised_address is not None and net.advertised_port is not None:
        return net.advertised_address, net.advertised_port
    return net.address, net.port


def _ingress_services(
    ingress: Resource, zone: str, online: Predicate
) -> dict[tuple[str, str], tuple[RemoteIngress, Counter[int], set[str]]]:
    """What one ingress of another zone offers: (mesh, service) -> (its endpoint there, the
    advertised service ports weighted by instances, the protocols). Empty for an ingress of
    this zone, without a zone, offline or not fitting the model."""
    if ingress.type != "ZoneIngress":
        return {}
    spec = spec_as(ingress, ZoneIngressSpec)
    if spec is None or not spec.zone or spec.zone == zone or not online(ingress):
        return {}
    per_service: Counter[tuple[str, str]] = Counter()
    ports: dict[tuple[str, str], Counter[int]] = {}
    protocols: dict[tuple[str, str], set[str]] = {}
    for svc in spec.available_services or ():
        mesh, tags = svc.mesh, svc.tags
        instances = 1 if svc.instances is None else svc.instances
        if mesh is None or svc.external_service or instances <= 0:
            continue
        name = tags[SERVICE_TAG]
        per_service[(mesh, name)] += instances
        protocols.setdefault((mesh, name), set()).add(tags.get(PROTOCOL_TAG, "tcp"))
        port = tags.get(SERVICE_PORT_TAG, "")
        if port.isdigit() and 0 < int(port) <= 65535:
            ports.setdefault((mesh, name), Counter())[int(port)] += instances
    their_zone, dial = spec.zone, _dial_address(spec)
    return {
        key: (
            RemoteIngress(their_zone, ingress.meta.name, dial[0], dial[1], instances),
            ports.get(key, Counter()),
            protocols[key],
        )
        for key, instances in per_service.items()
    }


def _remote(
    ingresses: Iterable[Resource],
    zone: str,
    online: Predicate,
    protocols: dict[tuple[str, str], set[str]],
) -> dict[tuple[str, str], tuple[list[RemoteIngress], Counter[int]]]:
    """(mesh, service) -> (ingress endpoints, advertised service ports weighted by instances)."""
    out: dict[tuple[str, str], tuple[list[RemoteIngress], Counter[int]]] = {}
    for ingress in ingresses:
        for key, (endpoint, ports, protos) in _ingress_services(ingress, zone, online).items():
            protocols.setdefault(key, set()).update(protos)
            endpoints, port_counts = out.setdefault(key, ([], Counter()))
            endpoints.append(endpoint)
            port_counts.update(ports)
    for endpoints, _ in out.values():
        endpoints.sort(key=_endpoint_order)
    return out


def _endpoint_order(r: RemoteIngress) -> tuple[str, str]:
    return (r.zone, r.ingress)


def _instance_order(i: LocalInstance) -> tuple[str, int, str, int]:
    return (i.address, i.port, i.dataplane, i.inbound)


def _choose_port(counts: Counter[int]) -> int | None:
    if not counts:
        return None
    return min(counts, key=lambda p: (-counts[p], p))


def build_catalog(
    zone: str,
    dataplanes: Iterable[Resource],
    ingresses: Iterable[Resource],
    *,
    online: Predicate = _always,
    ingress_online: Predicate = _always,
) -> Catalog:
    """The catalog of `zone` from its own Dataplanes and every ZoneIngress it knows (its own
    is recognised by its zone and skipped)."""
    local = local_instances(dataplanes, zone, online)
    protocols: dict[tuple[str, str], set[str]] = {
        key: {i.tags.get(PROTOCOL_TAG, "tcp") for i in instances}
        for key, instances in local.items()
    }
    remote = _remote(ingresses, zone, ingress_online, protocols)
    entries: list[ServiceEntry] = []
    for key in sorted(local.keys() | remote.keys()):
        instances = local.get(key, [])
        endpoints, ports = remote.get(key, ([], Counter()))
        counts = Counter(i.service_port for i in instances) + ports
        entries.append(
            ServiceEntry(
                mesh=key[0],
                service=key[1],
                local=tuple(instances),
                remote=tuple(endpoints),
                port=_choose_port(counts),
                protocols=frozenset(protocols.get(key, ())),
            )
        )
    return Catalog(zone, entries)


ServiceKey = tuple[str, str]  # (mesh, service)
_Remote = tuple[RemoteIngress, Counter[int], set[str]]


class CatalogIndex:
    """The catalog and the own `availableServices` kept current one resource at a time, so a
    Dataplane or ZoneIngress change costs the instances of the services it touches, not the
    zone's size (issue 19). `catalog()` and `available()` equal `build_catalog` and
    `available_services` over the resources put (tests/unit/dpconfig/test_catalog_index.py).

    Resources are identified by (type, mesh, name); `put` replaces, `remove` forgets. The
    predicates are read when a resource is put: a change of what they answer needs a new index.
    """

    def __init__(
        self, zone: str, *, online: Predicate = _always, ingress_online: Predicate = _always
    ) -> None:
        self.zone = zone
        self._online = online
        self._ingress_online = ingress_online
        self._dataplanes: dict[tuple[str, str], list[LocalInstance]] = {}
        self._ingresses: dict[str, dict[ServiceKey, _Remote]] = {}
        self._local: dict[ServiceKey, dict[tuple[str, str], list[LocalInstance]]] = {}
        self._remote: dict[ServiceKey, dict[str, _Remote]] = {}
        self._entries: dict[ServiceKey, ServiceEntry] = {}
        self._counts: Counter[AvailableKey] = Counter()
        self._order: dict[AvailableKey, tuple[str, str, tuple[tuple[str, str], ...]]] = {}
        self._stale: set[ServiceKey] = set()  # entries to recompute
        self._changed: set[ServiceKey] = set()  # entries that differ since `take_changed`
        self._available: list[dict[str, Any]] | None = []  # None: recompute

    def put(self, resource: Resource) -> None:
        """Adds or replaces a Dataplane or a ZoneIngress (other types are ignored)."""
        if resource.type == "Dataplane":
            self._put_dataplane((resource.meta.mesh, resource.meta.name), resource)
        elif resource.type == "ZoneIngress":
            self._put_ingress(resource.meta.name, resource)

    def remove(self, type_name: str, mesh: str, name: str) -> None:
        if type_name == "Dataplane":
            self._put_dataplane((mesh, name), None)
        elif type_name == "ZoneIngress":
            self._put_ingress(name, None)

    def _put_dataplane(self, dp: tuple[str, str], resource: Resource | None) -> None:
        mesh = dp[0]
        for inst in self._dataplanes.pop(dp, ()):
            key = (mesh, inst.tags[SERVICE_TAG])
            self._stale.add(key)
            of_key = self._local.get(key)
            if of_key is not None and of_key.pop(dp, None) is not None and not of_key:
                del self._local[key]
            self._count(mesh, inst, -1)
        if resource is None or not self._online(resource):
            return
        instances = list(_inbounds(resource, self.zone))
        if not instances:
            return
        self._dataplanes[dp] = instances
        for inst in instances:
            key = (mesh, inst.tags[SERVICE_TAG])
            self._stale.add(key)
            self._local.setdefault(key, {}).setdefault(dp, []).append(inst)
            self._count(mesh, inst, 1)

    def _count(self, mesh: str, inst: LocalInstance, delta: int) -> None:
        key = _available_key(mesh, inst)
        n = self._counts[key] + delta
        if n:
            self._counts[key] = n
            if key not in self._order:
                self._order[key] = _available_order(key)
        else:
            del self._counts[key]
            del self._order[key]
        self._available = None

    def _put_ingress(self, name: str, resource: Resource | None) -> None:
        for key in self._ingresses.pop(name, {}):
            self._stale.add(key)
            of_key = self._remote[key]
            del of_key[name]
            if not of_key:
                del self._remote[key]
        if resource is None:
            return
        offered = _ingress_services(resource, self.zone, self._ingress_online)
        if offered:
            self._ingresses[name] = offered
        for key, remote in offered.items():
            self._stale.add(key)
            self._remote.setdefault(key, {})[name] = remote

    def _refresh(self) -> None:
        for key in self._stale:
            entry = self._entry(key)
            if entry == self._entries.get(key):
                continue
            self._changed.add(key)
            if entry is None:
                del self._entries[key]
            else:
                self._entries[key] = entry
        self._stale.clear()

    def _entry(self, key: ServiceKey) -> ServiceEntry | None:
        instances = sorted(
            (i for insts in self._local.get(key, {}).values() for i in insts), key=_instance_order
        )
        remotes = self._remote.get(key, {}).values()
        if not instances and not remotes:
            return None
        protocols = {i.tags.get(PROTOCOL_TAG, "tcp") for i in instances}
        ports: Counter[int] = Counter()
        for _, advertised, protos in remotes:
            protocols |= protos
            ports.update(advertised)
        return ServiceEntry(
            mesh=key[0],
            service=key[1],
            local=tuple(instances),
            remote=tuple(sorted((r for r, _, _ in remotes), key=_endpoint_order)),
            port=_choose_port(Counter(i.service_port for i in instances) + ports),
            protocols=frozenset(protocols),
        )

    def catalog(self) -> Catalog:
        """The catalog now (a new immutable Catalog; unchanged entries are shared)."""
        self._refresh()
        return Catalog.of_entries(self.zone, dict(self._entries))

    def take_changed(self) -> set[ServiceKey]:
        """The (mesh, service) pairs whose entry changed since the last call."""
        self._refresh()
        changed, self._changed = self._changed, set()
        return changed

    def entry(self, mesh: str, service: str) -> ServiceEntry | None:
        self._refresh()
        return self._entries.get((mesh, service))

    def available(self) -> list[dict[str, Any]]:
        """The own ingresses' `availableServices` (recomputed only after a change of counts)."""
        if self._available is None:
            ordered = sorted(self._counts, key=self._order.__getitem__)
            self._available = [
                {"tags": dict(tags), "instances": self._counts[(mesh, tags)], "mesh": mesh}
                for mesh, tags in ordered
            ]
        return self._available
