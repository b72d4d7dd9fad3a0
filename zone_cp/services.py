"""The zone's services, kept current from its store: catalog, stable VIPs, DNS names, and the
`availableServices` of its own ingresses.

One store watch (a StoreMirror of Mesh, Dataplane and ZoneIngress) marks the state dirty and
keeps the newest state of each changed Dataplane and ZoneIngress; one task applies them, so a
burst of changes costs one pass (delayed by at most the pass before it). A pass costs the
services the changes touch, not the zone's size (issue 19, decision 117): the catalog is kept
by `zone_cp.catalog.ZoneCatalog`; only a Mesh change, a cache reload, a failed pass or
`invalidate` reads everything again. A pass, in order:

1. updates the catalog; syncs the VIP book only when the VIP keys it needs changed (a service
   or a zone of it came or went);
2. persists the VIPs that changed (VirtualIPs, one resource per mesh, synced to the global)
   *before* DNS can answer with them, so an address handed to a client survives a crash;
3. publishes an immutable `ServiceSnapshot` to listeners, naming the services that changed
   (the DNS server swaps its table only when the names changed; the config pusher rebuilds
   only the proxies that call a changed service);
4. writes the own ZoneIngresses whose `availableServices` changed, at most once per
   ADVERTISE_INTERVAL (they reach the other zones through the global); an ingress whose proxy
   is disconnected (its ZoneIngressInsight's last subscription is closed, zone_cp.dpstate)
   for longer than INGRESS_RESTART_GRACE advertises nothing until it reconnects. Within the
   grace it keeps advertising, so a restarting ingress does not make every other zone drop
   and re-add its services (issue 16).

A failed pass (the store refused a write) is logged and retried with a growing delay; the
snapshot in use stays the last good one.

Replicas of one zone sharing an etcd store run one ZoneServices each, but only the writer
(the zone's leader) allocates and writes; the others publish the VIPs it stored (VirtualIPs is
watched too), so every replica's DNS gives the same answers and a new leader continues from the
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from meshfed.dpconfig.catalog import Catalog, Predicate, ServiceKey, VipKey
from meshfed.dpconfig.external import external_vip_key
from meshfed.dpconfig.meshservices import ServiceTarget, is_target_key
from meshfed.resources.model import (
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Key,
    Meta,
    Resource,
    now_rfc3339,
)
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.external import MESH_EXTERNAL_SERVICE
from meshfed.resources.types.insights import ZONE_INGRESS_INSIGHT
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.vips import VIRTUAL_IPS
from meshfed.resources.types.zone_ingress import ZONE_INGRESS
from meshfed.store.base import ConflictError, NotFoundError, ResourceStore, StoreError
from meshfed.store.cache import StoreCache
from meshfed.store.mirror import resource_view
from zone_cp import dpstate
from zone_cp.catalog import ZoneCatalog, ingress_updates, is_relayed
from zone_cp.dns import NameSet
from zone_cp.dns_wiring import names_by_vip, zone_names
from zone_cp.service_targets import TYPES as TARGET_TYPES
from zone_cp.service_targets import ServiceTargets
from zone_cp.vipbook import VipBook

log = logging.getLogger("zone_cp.services")

WATCHED: Final = (
    MESH.name,
    DATAPLANE.name,
    ZONE_INGRESS.name,
    VIRTUAL_IPS.name,
    ZONE_INGRESS_INSIGHT.name,
    MESH_EXTERNAL_SERVICE.name,
    *TARGET_TYPES,
)
RETRY_FIRST: Final = 0.1
RETRY_MAX: Final = 5.0


def _always(resource: Resource) -> bool:
    return True


@dataclass(frozen=True)
class ServiceSnapshot:
    """What the zone resolves at one moment; replaced whole, never changed."""

    zone: str
    catalog: Catalog
    vips: dict[VipKey, str]  # active VIPs
    names: NameSet  # DNS name -> VIP
    generation: int = 0
    unallocated: tuple[VipKey, ...] = field(default=())
    # The services whose catalog entry or VIPs differ from the previous generation's (None:
    # unknown, diff the two): spares every listener a diff of the whole catalog.
    changed: frozenset[ServiceKey] | None = None
    # MeshServices and MeshMultiZoneServices with a VIP here (zone_cp.service_targets)
    targets: tuple[ServiceTarget, ...] = ()


SnapshotListener = Callable[[ServiceSnapshot], None]


def _key_text(key: VipKey) -> str:
    where = "" if key.zone is None else f" in zone {key.zone}"
    return f"{key.service} (mesh {key.mesh}{where})"


# How long an own ingress may be disconnected and still advertise its services: long enough
# for a restart (a zone-ingress process is serving again in about 1 s, measured on an idle
# machine; 3 s leaves room for a loaded one), short enough that other zones stop sending to a
# dead ingress within about 4 s (the grace, plus one trip through the global).
INGRESS_RESTART_GRACE: Final = 3.0
# Own ingresses' availableServices are written at most this often: the advertisement lists
# every service of the zone (and travels to the global and every other zone), so a burst of
# registrations must cost one write per interval, not one per pass. The newest counts win;
# a change after a quiet interval is written at once. Kuma also refreshes it periodically
# (`ingressUpdateInterval`, 1 s by default, in kuma-cp's configuration reference).
ADVERTISE_INTERVAL: Final = 0.25


def _disconnected_at(insight: Resource) -> float | None:
    """When the proxy's last subscription closed (seconds since the epoch), if it says."""
    subs = dpstate.previous_subscriptions(insight)
    text = subs[-1].get("disconnectTime") if subs else None
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class ZoneServices:
    def __init__(
        self,
        store: ResourceStore,
        zone: str,
        cidr: ipaddress.IPv4Network,
        *,
        online: Predicate = _always,
        writer: bool = True,
        cache: StoreCache | None = None,
        ingress_grace: float = INGRESS_RESTART_GRACE,
        advertise_interval: float = ADVERTISE_INTERVAL,
    ) -> None:
        """`cache`: the process's store cache (None: a cache of its own)."""
        self._store = store
        self.ingress_grace = ingress_grace
        self._grace_timer: asyncio.TimerHandle | None = None
        self.advertise_interval = advertise_interval
        self._advertised_at = -math.inf  # time.monotonic() of the last ingress write
        self._advertise_timer: asyncio.TimerHandle | None = None
        self.zone = zone
        self.cidr = cidr
        self.online = online
        self.writer = writer
        self._reload = True  # read the VIPs from the store before the next writing pass
        self.book = VipBook(cidr)
        self._mirror = resource_view(store, WATCHED, cache)
        self._snapshot = ServiceSnapshot(zone, Catalog(zone, []), {}, NameSet())
        self._listeners: list[SnapshotListener] = []
        self._written: dict[str, dict[str, Any]] = {}  # mesh -> VirtualIPs spec in the store
        self._offline: frozenset[str] = frozenset()  # own ingresses seen disconnected by a pass
        self._catalog = ZoneCatalog(zone, online)
        self._targets = ServiceTargets(zone)
        self._pending: dict[tuple[str, Key], Resource | None] = {}  # store changes to apply
        self._full = True  # the next pass reads everything (first pass, mesh change, reload)
        self._vips: dict[VipKey, str] | None = None  # book.active() as last published
        self._vips_synced = False  # the book has been synced with the catalog's VIP keys
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self.passes = 0
        self.failures = 0
        self.last_pass_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Follows the store (persisted VIPs included) and computes the first snapshot before
        returning, so DNS starts with the full table."""
        self._unlisten = self._mirror.listen(self._on_store_change)
        await self._mirror.start()
        await self._pass()
        self._task = asyncio.create_task(self._run(), name="zone-services")

    async def stop(self) -> None:
        for timer in (self._grace_timer, self._advertise_timer):
            if timer is not None:
                timer.cancel()
        self._grace_timer = self._advertise_timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        await self._mirror.stop()

    @property
    def snapshot(self) -> ServiceSnapshot:
        return self._snapshot

    def listen(self, listener: SnapshotListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unlisten() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unlisten

    def invalidate(self) -> None:
        """Recompute everything soon: something outside the store changed (e.g. `online`)."""
        self._full = True
        self._dirty.set()

    def set_writer(self, writer: bool) -> None:
        """Replicas sharing one zone store (etcd): only the leader allocates and writes VIPs
        and ingresses; the others answer with the VIPs it stored. A new leader starts from
        what the store holds."""
        self.writer = writer
        self._reload = True
        self._dirty.set()

    # -- the pass ----------------------------------------------------------------------------

    def _on_store_change(self, type_name: str, key: object, res: Resource | None) -> None:
        # An ingress's insight is rewritten on every report it sends; only a change of its
        # connection state concerns the services (None: the mirror reloaded everything).
        unchanged = (
            type_name == ZONE_INGRESS_INSIGHT.name
            and res is not None
            and dpstate.proxy_disconnected(res) == (res.meta.name in self._offline)
        )
        if unchanged:
            return
        if type_name == MESH_EXTERNAL_SERVICE.name:
            self._vips_synced = False  # its VIP comes or goes (zone_cp.services' external keys)
        self._targets.on_change(type_name if key is not None else MESH.name)
        if type_name in (DATAPLANE.name, ZONE_INGRESS.name) and isinstance(key, Key):
            self._pending[(type_name, key)] = res  # the newest state wins
        elif type_name == MESH.name or key is None:
            self._full = True  # a mesh came or went, or the cache reloaded: read everything
        self._dirty.set()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._pass()
                delay = RETRY_FIRST
            except Exception as exc:
                self.failures += 1
                self._full = True  # the next pass must not trust what this one half did
                log.error(
                    "services not updated (retrying in %.1fs): %s",
                    delay,
                    exc,
                    exc_info=not isinstance(exc, StoreError),  # a store refusal needs no trace
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                self._dirty.set()

    def _update_catalog(self) -> set[ServiceKey] | None:
        """Brings the catalog up to date: the pending changes only, or everything when a
        full pass is due. Returns the services that changed (None: a full pass)."""
        if self._full:
            self._full = False
            self._pending.clear()
            self._catalog.online = self.online
            self._catalog.reset(
                (r.name for r, _ in self._mirror.entries(MESH.name)),
                (r for r, _ in self._mirror.entries(DATAPLANE.name)),
                (r for r, _ in self._mirror.entries(ZONE_INGRESS.name)),
            )
            self._catalog.take_changed()
            return None
        pending, self._pending = self._pending, {}
        for (type_name, key), res in pending.items():
            self._catalog.put(type_name, key.mesh, key.name, res)
        return self._catalog.take_changed()

    async def _pass(self) -> None:
        started = time.perf_counter()
        changed = self._update_catalog()
        catalog = self._catalog.catalog()
        meshes = self._catalog.meshes
        if not self.writer:
            self._follow(catalog)
            self._vips_synced = False  # a writer again must sync the book
            self.passes += 1
            self.last_pass_seconds = time.perf_counter() - started
            return
        if self._reload:
            self._load_vips()
            self._reload = False
            self._vips_synced = False
        wanted = self._catalog.take_vip_keys()
        target_keys, targets_moved = self._targets.vip_keys(self._mirror, meshes)
        if wanted is not None or not self._vips_synced or targets_moved:
            if wanted is None:
                wanted = catalog.vip_keys()
            self._sync_vips([*wanted, *target_keys, *self._external_keys(meshes)], meshes)
            await self._persist_vips()
            self._vips_synced = True
        vips = self._vips if self._vips is not None else self.book.active()
        self._publish(catalog, vips, tuple(self.book.unallocated), changed)
        await self._targets.write(self._store, self._mirror, self._snapshot.vips)
        self._offline = offline = self._offline_ingresses()
        own = self._own_ingresses()
        if own:  # the advertisement costs the zone's services: only for an ingress to write
            await self._advertise(own, offline)
        self.passes += 1
        self.last_pass_seconds = time.perf_counter() - started

    async def _advertise(self, own: list[Resource], offline: frozenset[str]) -> None:
        """Writes the own ingresses' advertisement, or has a pass do it when the interval
        since the last write has passed."""
        wait = self._advertised_at + self.advertise_interval - time.monotonic()
        if wait > 0:
            if self._advertise_timer is None:
                self._advertise_timer = asyncio.get_running_loop().call_later(
                    wait, self._advertise_due
                )
            return
        updates = ingress_updates(self.zone, own, self._catalog.available(), offline)
        if updates:
            self._advertised_at = time.monotonic()
            await self._write_ingresses(updates)

    def _advertise_due(self) -> None:
        self._advertise_timer = None
        self._dirty.set()

    def _sync_vips(self, wanted: list[VipKey], meshes: frozenset[str]) -> None:
        before = set(self.book.unallocated)
        result = self.book.sync(wanted, meshes, now_rfc3339())
        self._vips = None
        if result.changed:
            log.info(
                "VIPs: %d new, %d back, %d reserved, %d released",
                len(result.allocated),
                len(result.revived),
                len(result.reserved),
                len(result.released),
            )
        if result.unallocated and set(result.unallocated) != before:
            shown = ", ".join(_key_text(k) for k in result.unallocated[:10])
            more = len(result.unallocated) - 10
            log.error(
                "VIP range %s is exhausted: no VIP (and no DNS name) for %s%s; remove services "
                "or widen --vip-cidr",
                self.book.network,
                shown,
                f" and {more} more" if more > 0 else "",
            )

    def _external_keys(self, meshes: frozenset[str]) -> list[VipKey]:
        """A VIP key per MeshExternalService of the zone's meshes (meshfed.dpconfig.external)."""
        return sorted(
            external_vip_key(r.mesh, r.name)
            for r, _ in self._mirror.entries(MESH_EXTERNAL_SERVICE.name)
            if r.mesh in meshes
        )

    def _own_ingresses(self) -> list[Resource]:
        return [r for r, _ in self._mirror.entries(ZONE_INGRESS.name) if not is_relayed(r)]

    def _offline_ingresses(self) -> frozenset[str]:
        """Own ingresses whose proxy has been disconnected for the grace period (an insight is
        only ever the zone's own: ZoneIngressInsight goes up to the global, never down). One
        still within its grace gets a pass when the grace ends."""
        now = time.time()
        offline: set[str] = set()
        wake: float | None = None
        for r, _ in self._mirror.entries(ZONE_INGRESS_INSIGHT.name):
            if not dpstate.proxy_disconnected(r):
                continue
            since = _disconnected_at(r)
            left = self.ingress_grace - (now - since) if since is not None else 0.0
            if left <= 0:
                offline.add(r.meta.name)
            else:
                wake = left if wake is None else min(wake, left)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if wake is not None:
            self._grace_timer = asyncio.get_running_loop().call_later(wake, self.invalidate)
        return frozenset(offline)

    def _follow(self, catalog: Catalog) -> None:
        """A replica that does not write: the leader's stored VIPs for what the catalog has."""
        book, _ = VipBook.from_specs(((r.mesh, r.spec) for r in self._stored_vips()), self.cidr)
        self.book = book
        target_keys, _ = self._targets.vip_keys(self._mirror, self._catalog.meshes)
        wanted = {
            *catalog.vip_keys(),
            *target_keys,
            *self._external_keys(self._catalog.meshes),
        }
        vips = {k: v for k, v in book.active().items() if k in wanted}
        self._publish(catalog, vips, ())

    def _publish(
        self,
        catalog: Catalog,
        vips: dict[VipKey, str],
        unallocated: tuple[VipKey, ...],
        changed: set[ServiceKey] | None = None,
    ) -> None:
        """A new snapshot; `changed`: the services whose entry changed since the last one
        (None: unknown). The VIPs, and with them the DNS names, are shared with the last
        snapshot when equal, so a listener can tell by identity that they did not change."""
        old = self._snapshot
        if vips is old.vips or vips == old.vips:  # `is`: most passes, without comparing
            vips, names = old.vips, old.names
            if self._targets.dirty:  # hostnames may change without a VIP moving
                names = zone_names({k: v for k, v in vips.items() if not is_target_key(k)})
        else:
            names = zone_names({k: v for k, v in vips.items() if not is_target_key(k)})
            if changed is not None:
                changed = changed | {
                    (k.mesh, k.service)
                    for k in old.vips.keys() | vips.keys()
                    if old.vips.get(k) != vips.get(k)
                }
        self._vips = vips
        targets, moved = self._targets.publish(self._mirror, vips, names)
        if moved and changed is not None:
            changed = changed | {(t.mesh, s) for t in (*old.targets, *targets) for s in t.services}
        snapshot = ServiceSnapshot(
            self.zone,
            catalog,
            vips,
            names,
            old.generation + 1,
            unallocated,
            None if changed is None else frozenset(changed),
            targets,
        )
        self._snapshot = snapshot
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("services listener failed")

    # -- store I/O ---------------------------------------------------------------------------

    def _stored_vips(self) -> list[Resource]:
        """This zone's VirtualIPs as the store holds them, the most recently written last."""
        own = [
            r
            for r, _ in self._mirror.entries(VIRTUAL_IPS.name)
            if r.meta.name == self.zone and r.meta.labels.get(LABEL_ORIGIN) != ORIGIN_GLOBAL
        ]
        own.sort(key=lambda r: int(r.meta.version) if r.meta.version.isdigit() else -1)
        return own

    def _load_vips(self) -> None:
        own = self._stored_vips()
        self.book, problems = VipBook.from_specs(((r.mesh, r.spec) for r in own), self.cidr)
        for problem in problems:
            log.warning("stored VIPs: %s", problem)
        self._written = {r.mesh: r.spec for r in own}
        held = len(self.book.active()) + len(self.book.reserved())
        log.info(
            "loaded %d VIP(s) of %d mesh(es) from the store (range %s)", held, len(own), self.cidr
        )

    async def _persist_vips(self) -> None:
        specs = self.book.to_specs()
        for mesh, spec in specs.items():
            if self._written.get(mesh) == spec:
                continue
            labels = {LABEL_ORIGIN: ORIGIN_ZONE, LABEL_ZONE: self.zone}
            res = Resource(VIRTUAL_IPS.name, Meta(name=self.zone, mesh=mesh, labels=labels), spec)
            try:
                await self._store.update(res)
            except NotFoundError:
                await self._store.create(res)
            self._written[mesh] = spec
        for mesh in [m for m in self._written if m not in specs]:
            with contextlib.suppress(NotFoundError):
                await self._store.delete(VIRTUAL_IPS.name, mesh, self.zone)
            del self._written[mesh]

    async def _write_ingresses(self, updates: list[Resource]) -> None:
        for ingress in updates:
            try:
                await self._store.update(ingress, expected_version=ingress.meta.version)
            except (ConflictError, NotFoundError):
                continue  # changed or removed meanwhile: that change starts another pass
            services = ingress.spec.get("availableServices") or []
            offline = " (its proxy is disconnected)" if ingress.name in self._offline else ""
            log.info(
                "ZoneIngress %s advertises %d service group(s)%s",
                ingress.name,
                len(services),
                offline,
            )

    # -- views -------------------------------------------------------------------------------

    def services_json(self, mesh: str) -> dict[str, Any]:
        return services_json(self._snapshot, mesh)

    def collector(self) -> Collector:
        return ServicesCollector(self)


def services_json(snapshot: ServiceSnapshot, mesh: str) -> dict[str, Any]:
    """`GET /meshes/{mesh}/services` on a zone: each service, the zones that have it with their
    instance counts, this zone's VIP for it, its zone-pinned VIPs and the names answering."""
    by_vip = names_by_vip(snapshot.names)
    items = []
    for entry in snapshot.catalog.services(mesh):
        counts: Counter[str] = Counter()
        if entry.local:
            counts[snapshot.zone] = len(entry.local)
        for remote in entry.remote:
            counts[remote.zone] += remote.instances
        zones = entry.zones(snapshot.zone)
        vip = snapshot.vips.get(VipKey(mesh, entry.service))
        pinned = {z: v for z in zones if (v := snapshot.vips.get(VipKey(mesh, entry.service, z)))}
        names = sorted(n for v in [vip, *pinned.values()] if v for n in by_vip.get(v, []))
        items.append(
            {
                "service": entry.service,
                "port": entry.port,
                "instances": sum(counts.values()),
                "zones": [{"zone": z, "instances": counts[z]} for z in zones],
                "vip": vip,
                "zoneVips": pinned,
                "names": names,
            }
        )
    return {"mesh": mesh, "zone": snapshot.zone, "total": len(items), "items": items, "next": None}


class ServicesCollector(Collector):
    """VIP and catalog metrics, read at scrape time."""

    def __init__(self, services: ZoneServices) -> None:
        self._services = services

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._services
        book = s.book
        yield GaugeMetricFamily(
            "meshfed_vip_capacity",
            "Addresses in the zone's VIP range",
            value=book.allocator.capacity,
        )
        held = GaugeMetricFamily("meshfed_vips", "VIPs held, by state", labels=["state"])
        held.add_metric(["active"], len(book.active()))
        held.add_metric(["reserved"], len(book.reserved()))
        yield held
        yield GaugeMetricFamily(
            "meshfed_vips_unallocated",
            "Services and zone-pinned names without a VIP because the range is exhausted",
            value=len(book.unallocated),
        )
        yield CounterMetricFamily(
            "meshfed_vip_allocation_failures",
            "VIP allocations that failed because the range was exhausted",
            value=book.allocation_failures,
        )
        yield GaugeMetricFamily(
            "meshfed_catalog_services",
            "Services (mesh and name) the zone resolves",
            value=len(s.snapshot.catalog),
        )
        yield CounterMetricFamily(
            "meshfed_catalog_passes", "Catalog recomputations", value=s.passes
        )
        yield CounterMetricFamily(
            "meshfed_catalog_failures", "Catalog passes that failed (retried)", value=s.failures
        )
        yield GaugeMetricFamily(
            "meshfed_catalog_last_pass_seconds",
            "Duration of the last catalog pass",
            value=s.last_pass_seconds,
        )
