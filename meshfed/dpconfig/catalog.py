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
        instances.sort(key=lambda i: (i.address, i.port, i.dataplane, i.inbound))
    return out


def available_services(
    dataplanes: Iterable[Resource], zone: str, online: Predicate = _always
) -> list[dict[str, Any]]:
    """The zone's ZoneIngress `availableServices`: instances grouped by mesh and tags."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for (mesh, _service), instances in local_instances(dataplanes, zone, online).items():
        for inst in instances:
            tags = {**inst.tags, SERVICE_PORT_TAG: str(inst.service_port)}
            counts[(mesh, tuple(sorted(tags.items())))] += 1
    return [
        {"tags": dict(tags), "instances": n, "mesh": mesh}
        for (mesh, tags), n in sorted(
            counts.items(), key=lambda kv: (kv[0][0], dict(kv[0][1])[SERVICE_TAG], kv[0][1])
        )
    ]


def _dial_address(ingress: ZoneIngressSpec) -> tuple[str, int]:
    net = ingress.networking
    if net.advertised_address is not None and net.advertised_port is not None:
        return net.advertised_address, net.advertised_port
    return net.address, net.port


def _remote(
    ingresses: Iterable[Resource],
    zone: str,
    online: Predicate,
    protocols: dict[tuple[str, str], set[str]],
) -> dict[tuple[str, str], tuple[list[RemoteIngress], Counter[int]]]:
    """(mesh, service) -> (ingress endpoints, advertised service ports weighted by instances)."""
    out: dict[tuple[str, str], tuple[list[RemoteIngress], Counter[int]]] = {}
    for ingress in ingresses:
        if ingress.type != "ZoneIngress":
            continue
        spec = spec_as(ingress, ZoneIngressSpec)
        if spec is None or not spec.zone or spec.zone == zone or not online(ingress):
            continue
        their_zone, dial = spec.zone, _dial_address(spec)
        per_service: Counter[tuple[str, str]] = Counter()
        ports: dict[tuple[str, str], Counter[int]] = {}
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
        for key, instances in per_service.items():
            endpoints, port_counts = out.setdefault(key, ([], Counter()))
            endpoints.append(
                RemoteIngress(their_zone, ingress.meta.name, dial[0], dial[1], instances)
            )
            port_counts.update(ports.get(key, Counter()))
    for endpoints, _ in out.values():
        endpoints.sort(key=lambda r: (r.zone, r.ingress))
    return out


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
