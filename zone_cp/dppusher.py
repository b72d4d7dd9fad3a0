"""Builds the connected proxies' configs and sends those that changed (decision 32).

One task rebuilds: a store change (Mesh, Secret, policies) or a new proxy marks proxies dirty
(`invalidate`), a new service snapshot marks those whose services changed (zone_cp.dpbuild
`Wants`, found through a `WantsIndex` rather than by asking every proxy: decision 118), a
certificate due for rotation marks its proxy (the first due time is kept as configs are
pushed, not scanned for on every pass); after a short debounce every dirty
proxy's config is rebuilt from inputs gathered once for the pass, encoded once, and sent if
the hash of those bytes (the config version) changed: the bytes hashed are the bytes sent
(decision 75). A config that cannot be built (no CA yet, the mesh deleted) is answered once
with a non-fatal CONFIG_UNAVAILABLE naming why; the proxy keeps its last config and gets the
next one as soon as it can be built.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Final

from meshfed._gen import dataplane_pb2 as pb
from meshfed.aio import wait_for
from meshfed.dpconfig.build import BuildError
from meshfed.dpconfig.egress import EgressConfig
from meshfed.dpconfig.http_route import MESH_HTTP_ROUTE
from meshfed.dpconfig.model import IngressConfig, SidecarConfig, encode_config
from meshfed.dpconfig.policies import ANY_SERVICE, MESH_TCP_ROUTE, routed_services
from meshfed.dpconfig.protocol import ProxyType, config_message, error_message
from meshfed.resources.model import Resource
from meshfed.resources.types.external import MESH_EXTERNAL_SERVICE
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.passthrough import MESH_PASSTHROUGH
from meshfed.resources.types.policies import POLICIES
from meshfed.resources.types.secret import SECRET
from meshfed.resources.types.zone_egress import ZONE_EGRESS
from zone_cp.certs import CertError, CertIssuer
from zone_cp.dpbuild import (
    BuildInputs,
    ServiceKey,
    Unavailable,
    Wants,
    build_config,
    changed_services,
)
from zone_cp.dpsession import Session, SessionKey
from zone_cp.egress_build import build_egress_config, egress_identity
from zone_cp.external_outbounds import with_external_outbounds, with_passthrough
from zone_cp.services import ServiceSnapshot, ZoneServices

log = logging.getLogger("zone_cp.dpserver")

DEBOUNCE: Final = 0.02  # a burst of store events costs one rebuild
# How long the callers of a service whose endpoints changed may wait for their new config,
# from the first change of a window (decision 182): a burst of registrations or restarts
# behind one service costs its callers one config, not one per endpoint. Issue 19 allows 1 s.
COALESCE: Final = 0.2
PASS_SLICE: Final = 64  # builds between two turns of the event loop in a pass
POLICY_TYPES: Final = tuple(d.name for d in POLICIES)
# what a config is built from (OUTSIDE_TYPES: traffic leaving the mesh, zone_cp.egress_build
# and zone_cp.external_outbounds)
OUTSIDE_TYPES: Final = (MESH_EXTERNAL_SERVICE.name, MESH_PASSTHROUGH.name)
WATCHED: Final = (MESH.name, SECRET.name, *POLICY_TYPES, *OUTSIDE_TYPES)
RotateAt = Callable[[str, str], dt.datetime | None]  # (mesh, name) -> when its cert is due


class DirtySet:
    """The proxies to rebuild at the next pass: some, or everyone; and those that may wait
    until a due time (`add_later`: callers of a changed service, decision 182)."""

    def __init__(self) -> None:
        self._keys: set[SessionKey] = set()
        self._all = False
        self._later: set[SessionKey] = set()
        self.due: float | None = None  # when `_later` must be rebuilt (None: nothing waits)

    def add(self, key: SessionKey | None) -> None:
        """`key` None: everyone."""
        if key is None:
            self._all = True
        else:
            self._keys.add(key)

    def add_later(self, key: SessionKey, due: float) -> bool:
        """Rebuild `key` by `due`, or by the due time already set (a window is not extended
        by the changes inside it). True if this set the due time."""
        self._later.add(key)
        if self.due is None:
            self.due = due
            return True
        return False

    def take(self, live: Collection[SessionKey], now: float = math.inf) -> set[SessionKey]:
        """The dirty keys still connected, and those waiting if they are due by `now`
        (default: everything), leaving them taken (costs the dirty keys, not every proxy,
        unless everyone is dirty). A waiting key rebuilt now for another reason waits no
        more: its build reads the newest services."""
        keys = set(live) if self._all else {k for k in self._keys if k in live}
        if self.due is not None and self.due <= now:
            keys |= {k for k in self._later if k in live}
            self._later = set()
        else:
            self._later -= keys
        if not self._later:
            self.due = None
        self._keys, self._all = set(), False
        return keys


class WantsIndex:
    """Which proxies a set of changed services concerns, found without asking every proxy
    (`Wants.affected_by` of each, which a catalog change in a zone of 10,000 sidecars would
    otherwise cost): sidecars by the services they call, those that call their whole mesh by
    mesh, and the ingresses (every change concerns them)."""

    def __init__(self) -> None:
        self._wants: dict[SessionKey, Wants] = {}
        self._by_service: dict[ServiceKey, set[SessionKey]] = {}
        self._by_mesh: dict[str, set[SessionKey]] = {}
        self._ingresses: set[SessionKey] = set()

    def __len__(self) -> int:
        return len(self._wants)

    def get(self, key: SessionKey) -> Wants | None:
        return self._wants.get(key)

    def put(self, key: SessionKey, wants: Wants) -> None:
        self.discard(key)
        self._wants[key] = wants
        for group in self._groups(wants):
            group.add(key)

    def discard(self, key: SessionKey) -> None:
        wants = self._wants.pop(key, None)
        if wants is None:
            return
        for group in self._groups(wants):
            group.discard(key)
        if wants.services is not None:
            for service in wants.services:
                if not self._by_service.get((wants.mesh, service), True):
                    del self._by_service[(wants.mesh, service)]

    def _groups(self, wants: Wants) -> list[set[SessionKey]]:
        if wants.kind is ProxyType.INGRESS:
            return [self._ingresses]
        if wants.services is None:
            return [self._by_mesh.setdefault(wants.mesh, set())]
        return [self._by_service.setdefault((wants.mesh, s), set()) for s in wants.services]

    def affected(self, changed: Collection[ServiceKey]) -> set[SessionKey]:
        """The proxies whose Wants are `affected_by(changed)`."""
        if not changed:
            return set()
        out = set(self._ingresses)
        for mesh in {m for m, _ in changed}:
            out |= self._by_mesh.get(mesh, set())
        for key in changed:
            out |= self._by_service.get(key, set())
        return out


def earliest_rotation(sessions: Iterable[Session], rotate_at: RotateAt) -> dt.datetime | None:
    """When the first sidecar (or egress) certificate is due (None: none)."""
    times = [
        t
        for s in sessions
        if s.kind is not ProxyType.INGRESS and (t := rotate_at(s.mesh, s.name)) is not None
    ]
    return min(times) if times else None


def next_rotation(
    sessions: Iterable[Session], rotate_at: RotateAt, now: dt.datetime
) -> float | None:
    """Seconds until the first sidecar certificate is due (0 if one is overdue; None: none)."""
    first = earliest_rotation(sessions, rotate_at)
    return None if first is None else max(0.0, (first - now).total_seconds())


def due_for_rotation(
    sessions: Mapping[SessionKey, Session], rotate_at: RotateAt, now: dt.datetime
) -> set[SessionKey]:
    """The sidecars (and egresses) whose certificate is due."""
    return {
        key
        for key, s in sessions.items()
        if s.kind is not ProxyType.INGRESS
        and (t := rotate_at(s.mesh, s.name)) is not None
        and t <= now
    }


def message_if_changed(
    config: SidecarConfig | IngressConfig | EgressConfig, sent: str
) -> tuple[str, pb.CpMessage] | None:
    """(version, Config message) for a rebuilt config, None if `sent` is already its version.
    The config is encoded once: its version is the hash of the very bytes sent."""
    encoded = encode_config(config)
    if encoded.version == sent:
        return None
    return encoded.version, config_message(encoded)


class ConfigPusher:
    def __init__(
        self,
        zone: str,
        services: ZoneServices,
        issuer: CertIssuer,
        sessions: Mapping[SessionKey, Session],
        resources: Callable[[str], list[Resource]],
        *,
        debounce: float = DEBOUNCE,
        coalesce: float = COALESCE,
    ) -> None:
        """`resources(type)`: the zone store's resources of a WATCHED type, as mirrored;
        `coalesce`: how long the callers of a changed service may wait (decision 182)."""
        self.zone = zone
        self._services = services
        self._issuer = issuer
        self._sessions = sessions
        self._resources = resources
        self._debounce = debounce
        self._coalesce = coalesce
        self._seen: ServiceSnapshot = services.snapshot  # the last snapshot diffed
        self._dirty = DirtySet()
        self._wants = WantsIndex()  # of the sessions, kept by `invalidate` and `forget`
        # When the first certificate is due, kept as configs are pushed (a leaf is issued
        # only there); it may be early (a proxy left), never late. Unknown: scan everyone.
        self._rotation: dt.datetime | None = None
        self._rotation_known = False
        self._wake = asyncio.Event()
        # `_egresses`: the egress sessions found by the last scan (None: scan again)
        self._egress_list: list[tuple[SessionKey, Session]] | None = None
        self.configs_sent = 0
        self.passes = 0

    def follow_services(self) -> Callable[[], None]:
        """Rebuilds on each new service snapshot from now on; returns the unlisten."""
        self._seen = self._services.snapshot
        return self._services.listen(self._on_snapshot)

    def invalidate(self, key: SessionKey | None = None) -> None:
        """Rebuild soon: one proxy's config (`key`, which also (re)indexes what it wants: a
        proxy registering) or everyone's."""
        if key is not None:
            session = self._sessions.get(key)
            if session is None:
                self._wants.discard(key)
            else:
                self._wants.put(key, session.wants)
        if key is None or key[0] == ZONE_EGRESS.name:
            self._egress_list = None
        self._dirty.add(key)
        self._wake.set()

    def forget(self, key: SessionKey) -> None:
        """A proxy's session ended."""
        if key not in self._sessions:
            self._wants.discard(key)
        if key[0] == ZONE_EGRESS.name:
            self._egress_list = None

    def _on_snapshot(self, snapshot: ServiceSnapshot) -> None:
        """Rebuild the proxies whose services changed (a sidecar that calls two services
        of a thousand is not rebuilt when another one scales)."""
        old, self._seen = self._seen, snapshot
        if snapshot.changed is not None and snapshot.generation == old.generation + 1:
            changed: Collection[ServiceKey] = snapshot.changed  # the catalog's own account
        else:
            changed = changed_services(old.catalog, old.vips, snapshot.catalog, snapshot.vips)
        if not changed:
            return
        changed = self._with_routed(changed, snapshot)
        sessions = self._sessions
        if len(self._wants) != len(sessions):  # sessions changed without telling: re-index
            self._wants = WantsIndex()
            for key, session in sessions.items():
                self._wants.put(key, session.wants)
        for key in self._wants.affected(changed):
            live = sessions.get(key)
            if live is None:
                self._wants.discard(key)
                continue
            if live.wants != self._wants.get(key):
                self._wants.put(key, live.wants)
            if live.wants.affected_by(changed):
                self._later(key)

    def _later(self, key: SessionKey) -> None:
        """Rebuild `key` within the coalescing window (decision 182); the first key of a
        window wakes the loop so it waits until the window's end."""
        if self._dirty.add_later(key, time.monotonic() + self._coalesce):
            self._wake.set()

    def _with_routed(
        self, changed: Collection[ServiceKey], snapshot: ServiceSnapshot
    ) -> Collection[ServiceKey]:
        """`changed` and the services a route (TCP, HTTP) sends to a changed one: their callers'
        configs hold its endpoints too (decision 124)."""
        routes = [*self._resources(MESH_TCP_ROUTE), *self._resources(MESH_HTTP_ROUTE)]
        if not routes:
            return changed
        out = set(changed)
        for mesh, service in changed:
            for routed in routed_services(service, (r for r in routes if r.mesh == mesh)):
                if routed == ANY_SERVICE:
                    out |= {(mesh, e.service) for e in snapshot.catalog.services(mesh)}
                else:
                    out.add((mesh, routed))
        return out

    async def run(self) -> None:
        sessions, rotate_at = self._sessions, self._rotate_at
        while True:
            if not self._rotation_known:
                self._rotation = earliest_rotation(sessions.values(), rotate_at)
                self._rotation_known = True
            waits = []
            if self._rotation is not None:
                waits.append((self._rotation - dt.datetime.now(dt.UTC)).total_seconds())
            if self._dirty.due is not None:
                waits.append(self._dirty.due - time.monotonic())
            timeout = max(0.0, min(waits)) if waits else None
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), timeout)
            if self._debounce and self._wake.is_set():
                await asyncio.sleep(self._debounce)
            self._wake.clear()
            keys = self._dirty.take(sessions, time.monotonic())
            now = dt.datetime.now(dt.UTC)
            if self._rotation is not None and self._rotation <= now:
                keys |= due_for_rotation(sessions, rotate_at, now)
                self._rotation_known = False  # scanned again once their new leaves exist
            if not keys:
                continue
            self.passes += 1
            if not await self._rebuild_in_slices(keys):
                await asyncio.sleep(1.0)

    def rebuild(self, keys: Collection[SessionKey]) -> bool:
        """One pass: builds the configs of the connected proxies among `keys` and sends those
        that changed. False if the inputs could not be gathered (everyone is dirty again)."""
        prepared = self._prepare()
        if prepared is None:
            return False
        for key in self._ordered(keys):
            self._rebuild_one(key, *prepared)
        return True

    async def _rebuild_in_slices(self, keys: Collection[SessionKey]) -> bool:
        """`rebuild`, giving the event loop a turn every PASS_SLICE builds: a pass of a
        thousand callers (decision 182) must not hold back the configs already built, nor
        the first config of a proxy registering meanwhile (it goes in the next pass). A
        proxy that left meanwhile is skipped; one changed meanwhile is dirty again."""
        prepared = self._prepare()
        if prepared is None:
            return False
        for n, key in enumerate(self._ordered(keys), 1):
            self._rebuild_one(key, *prepared)
            if n % PASS_SLICE == 0:
                await asyncio.sleep(0)
        return True

    def _ordered(self, keys: Collection[SessionKey]) -> list[SessionKey]:
        """Proxies waiting for their first config first (a registration is done when it
        arrives), then by key."""
        sessions = self._sessions
        return sorted(
            keys,
            key=lambda k: ((s := sessions.get(k)) is None or s.subscription.config_sent != "", k),
        )

    def _prepare(self) -> tuple[BuildInputs, list[Resource]] | None:
        """A pass's inputs and egresses, gathered once; None if they could not be."""
        try:
            inputs = self._inputs()
        except Exception:  # a bug must not end every future config push
            log.exception("cannot gather the inputs of a config rebuild")
            self.invalidate()
            return None
        return inputs, self._egresses()

    def _rebuild_one(self, key: SessionKey, inputs: BuildInputs, egresses: list[Resource]) -> None:
        session = self._sessions.get(key)
        if session is not None:
            self._push(session, inputs, egresses)
            due = self._rotate_at(session.mesh, session.name)
            if due is not None and (self._rotation is None or due < self._rotation):
                self._rotation = due

    def _egresses(self) -> list[Resource]:
        """The connected zone egresses' resources (sidecars' outbounds to external services
        list them), kept until `invalidate()` or `forget` of an egress: an egress connecting or
        leaving rebuilds everyone through `invalidate()` (zone_cp.dpserver). Scanning every
        session for them on each build was O(proxies) per config (issue 19). An egress session
        replaced or gone meanwhile (a takeover in progress) makes it scan again."""
        found = self._egress_list
        if found is None or any(self._sessions.get(k) is not s for k, s in found):
            found = [(k, s) for k, s in self._sessions.items() if k[0] == ZONE_EGRESS.name]
            self._egress_list = found
        return [s.resource for _, s in found]

    def _rotate_at(self, mesh: str, name: str) -> dt.datetime | None:
        """When a proxy's certificate is due: a sidecar's leaf, or the first of an egress's
        (one per external service; an egress has no mesh)."""
        if mesh:
            return self._issuer.rotate_at(mesh, name)
        return self._issuer.first_rotation(egress_identity(name, ""))

    def _inputs(self) -> BuildInputs:
        return BuildInputs.of(
            self._resources(MESH.name),
            self._resources(SECRET.name),
            [r for t in (*POLICY_TYPES, *OUTSIDE_TYPES) for r in self._resources(t)],
        )

    def _push(self, session: Session, inputs: BuildInputs, egresses: list[Resource]) -> None:
        """`egresses`: the connected zone egresses' resources."""
        snapshot = self._services.snapshot
        try:
            config: SidecarConfig | IngressConfig | EgressConfig
            if session.kind is ProxyType.EGRESS:
                config = build_egress_config(session.resource, self.zone, inputs, self._issuer)
            else:
                config = build_config(
                    session.kind,
                    session.resource,
                    self.zone,
                    snapshot.catalog,
                    snapshot.vips,
                    inputs,
                    self._issuer,
                    reachable=session.hello.reachable,
                    targets=snapshot.targets,
                    view=session.view(self.zone) if session.kind is ProxyType.SIDECAR else None,
                )
                if isinstance(config, SidecarConfig):
                    config = with_external_outbounds(
                        config,
                        session.resource,
                        self.zone,
                        inputs.policies.get(session.mesh, {}),
                        egresses,
                        snapshot.vips,
                        session.hello.reachable,
                    )
                    config = with_passthrough(
                        config,
                        session.resource,
                        self.zone,
                        inputs.meshes[session.mesh],
                        inputs.policies.get(session.mesh, {}),
                        session.view(self.zone),
                    )
        except (Unavailable, BuildError, CertError) as exc:
            self._unavailable(session, str(exc))
            return
        except Exception as exc:  # a bug must not stop the other proxies' configs
            log.exception("%s: building its config failed", session.describe())
            self._unavailable(session, f"internal error building the config: {exc!r}")
            return
        session.unavailable = ""
        sub = session.subscription
        changed = message_if_changed(config, sub.config_sent)
        if changed is None:
            return
        sub.config_sent, message = changed
        session.outbox.put_nowait(message)
        sub.responses_sent += 1
        session.insight_dirty = True
        self.configs_sent += 1
        if log.isEnabledFor(logging.DEBUG):  # `describe` costs more than the check
            log.debug("%s: config %s sent", session.describe(), sub.config_sent)

    def _unavailable(self, session: Session, reason: str) -> None:
        if reason == session.unavailable:
            return
        session.unavailable = reason
        log.warning("%s: no config for now: %s", session.describe(), reason)
        session.outbox.put_nowait(error_message(pb.Error.CONFIG_UNAVAILABLE, reason))
