"""What the config server stores when a proxy connects and disconnects, and the crash sweep.

Connect: the proxy's Dataplane or ZoneIngress is stored (zone_cp.dpstate decides its labels
and inbound health), its insight gets a new subscription (a sidecar's first connection: at
its first report, decision 179), and it becomes a live session. The
same proxy again (its old stream may linger half-dead) takes over without marking anything
offline; another proxy with the same name and a different Dataplane is refused.
Disconnect: the Dataplane's inbounds are marked not ready and the subscription closed, in a
task of its own (grpc cancels the handler of a stream whose peer died mid-write); nothing is
marked when zone-cp itself stops (proxies reconnect, services should not flap meanwhile).
For a zone ingress the closed subscription alone makes zone_cp.services empty its
`availableServices` (other zones stop sending to it) until it reconnects (decision 35).
Crash sweep: after a crash nothing marked anyone offline; `close_stale` closes, some time
after the start, what is still marked connected to a previous instance. Replicas of a zone on
etcd sweep instead on the leader, as soon as a replica's presence lease is gone
(zone_cp.dpsweep).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from meshfed.dpconfig.protocol import Hello, ProxyType
from meshfed.resources.model import Resource, now_rfc3339
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.resources.types.zone_egress import ZONE_EGRESS, ZONE_EGRESS_INSIGHT
from meshfed.resources.types.zone_ingress import ZONE_INGRESS
from meshfed.store.base import StoreError
from zone_cp import dpstate
from zone_cp.dpbatch import KeyedLock
from zone_cp.dpbuild import Wants
from zone_cp.dpinsights import InsightWriter
from zone_cp.dprecords import Records, changes
from zone_cp.dpsession import Session, SessionKey

log = logging.getLogger("zone_cp.dpserver")
# What a registration reads: the proxies' resources and insights. zone-cp's SQLite store keeps
# their keys in memory, so that a new proxy's read of what is not stored yet costs no trip to
# the store's thread (meshfed.store.sqlite `key_index`; issue 19).
PROXY_TYPES = (
    DATAPLANE.name,
    DATAPLANE_INSIGHT.name,
    ZONE_INGRESS.name,
    ZONE_INGRESS_INSIGHT.name,
    ZONE_EGRESS.name,
    ZONE_EGRESS_INSIGHT.name,
)
# How long a stop waits for the disconnection writes of proxies that left just before.
DRAIN_TIMEOUT = 2.0


class Registration:
    def __init__(
        self,
        records: Records,
        insights: InsightWriter,
        zone: str,
        instance_id: str,
        *,
        mesh_exists: Callable[[str], bool],
        on_registered: Callable[[SessionKey], None],
        on_closed: Callable[[SessionKey], None] | None = None,
    ) -> None:
        self._records = records
        self._insights = insights
        self.zone = zone
        self.instance_id = instance_id
        self._mesh_exists = mesh_exists
        self._on_registered = on_registered
        self._on_closed = on_closed  # a live session ended (not called when replaced)
        self.sessions: dict[SessionKey, Session] = {}
        self._registering = KeyedLock()  # one registration at a time per proxy
        self._recording: set[asyncio.Task[None]] = set()  # disconnections being written
        self.stopping = False  # zone-cp stops: disconnections mark no one offline
        self.stale_closed = 0

    async def register(self, hello: Hello) -> Session:
        """Stores the proxy's resource and insight (unless `defers_insight`), then (with no
        await after it, so a cancelled registration leaves nothing behind) makes it a live
        session.

        Proxies of different names register concurrently, their reads and writes coalesced
        with the others' by Records (one read and one write each); the same name waits for
        the registration before it (decision 123)."""
        announced = hello.resource
        async with self._registering.hold(announced.key):
            current = self.sessions.get(announced.key)
            replaced: list[dict[str, Any]] = []
            if current is not None:
                refusal = takeover_refusal(current, announced)
                if refusal is not None:
                    raise dpstate.Refused(refusal)
                # The same proxy again (its old stream may linger half-dead): the new stream
                # takes over without the old one marking the dataplane offline.
                del self.sessions[announced.key]
                current.subscription.disconnect_time = now_rfc3339()
                replaced = [*current.history, current.subscription.to_json()]
                current.stop("replaced by a newer stream of the same proxy")
            sidecar = hello.proxy_type is ProxyType.SIDECAR
            if sidecar and not self._mesh_exists(announced.mesh):
                raise dpstate.Refused(dpstate.no_mesh(announced.mesh, self.zone))
            kind, insight_type = (
                (DATAPLANE, DATAPLANE_INSIGHT)
                if sidecar
                else (ZONE_EGRESS, ZONE_EGRESS_INSIGHT)
                if hello.proxy_type is ProxyType.EGRESS
                else (ZONE_INGRESS, ZONE_INGRESS_INSIGHT)
            )
            mesh = announced.mesh if sidecar else ""
            key = (kind.name, mesh, announced.name)
            insight_key = (insight_type.name, mesh, announced.name)
            found = await self._records.read([key, insight_key])
            stored = found.get(key)
            if sidecar:
                resource = dpstate.registered_dataplane(announced, self.zone, stored)
            elif hello.proxy_type is ProxyType.EGRESS:
                resource = dpstate.registered_egress(announced, self.zone)
            else:
                resource = dpstate.registered_ingress(announced, self.zone, stored)
            old_insight = found.get(insight_key)
            history = replaced or dpstate.previous_subscriptions(old_insight)
            session = Session(
                hello=hello,
                resource=resource,
                wants=Wants.of(hello.proxy_type, resource, hello.reachable),
                subscription=dpstate.Subscription(
                    id=uuid.uuid4().hex,
                    instance=self.instance_id,
                    connect_time=now_rfc3339(),
                    proxy_version=hello.proxy_version,
                ),
                history=history,
                ready=dpstate.health_of(resource),
            )
            deferred = defers_insight(session, old_insight)
            insight = None if deferred else self._insights.resource(session)
            # Nothing stored under its name: its Dataplane goes with its insight (decision 183).
            session.resource_written = not (deferred and stored is None)
            written = resource if session.resource_written else None
            await self._records.write(
                [
                    r
                    for r, was in ((written, stored), (insight, old_insight))
                    if r is not None and changes(r, was)
                ]
            )
            session.insight_written = insight
            session.insight_dirty = deferred  # its first report or the next flush writes it
            self.sessions[resource.key] = session
        self._on_registered(session.key)
        return session

    async def unregister(self, session: Session) -> None:
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
            if self._on_closed is not None:
                self._on_closed(session.key)
        else:
            return  # replaced: the newer session owns the resource
        if self.stopping:
            return
        log.info("%s disconnected%s", session.describe(), _reason(session))
        session.subscription.disconnect_time = now_rfc3339()
        # grpc cancels the handler of a stream whose peer vanished (a SIGKILLed proxy): the
        # writes that record the disconnection run in their own task, so they outlive it.
        task = asyncio.create_task(self._record_disconnection(session), name="dp-offline")
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)
        await asyncio.shield(task)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Waits for the disconnections seen so far to be written (before the store goes),
        at most `timeout`: with the store unreachable a stop must not hang on them (the
        leader's crash sweep marks those proxies once this replica's presence lapses)."""
        if not self._recording:
            return
        _, pending = await asyncio.wait(set(self._recording), timeout=timeout)
        if pending:
            log.warning(
                "stopping with %d disconnection(s) not recorded (the store did not answer "
                "within %.0fs); the zone's crash sweep records them",
                len(pending),
                timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _record_disconnection(self, session: Session) -> None:
        # Ordered with the registrations of the same proxy (decision 131): its new stream (a
        # restart) registers after this is written; one that registered first owns the
        # resource and its insight, and this writes nothing, or its offline health would
        # land after the newcomer read the stored health, and the proxy stay not ready.
        async with self._registering.hold(session.key):
            if session.key in self.sessions:
                return
            await self._write_disconnection(session)

    async def _write_disconnection(self, session: Session) -> None:
        try:
            if session.kind is ProxyType.SIDECAR:
                await self.set_ready(session, {})
            await self._insights.write(session)
        except StoreError as exc:
            log.error("%s: cannot record the disconnection: %s", session.describe(), exc)

    async def set_ready(self, session: Session, ready: dict[int, bool]) -> None:
        """The stored Dataplane with this readiness ({}: offline, nothing ready)."""
        await self._records.set_health(session.resource, ready)

    async def report_ready(self, session: Session, ready: dict[int, bool]) -> None:
        """A connected sidecar reported: readiness other than `session.ready` (the health its
        Dataplane was stored with) is written without reading it back first, and so are its
        Dataplane and insight if its registration left them unwritten, in the same batch
        (decisions 179, 183)."""
        puts: list[Resource] = []
        if ready != session.ready or not session.resource_written:
            puts.append(dpstate.with_health(session.resource, ready, default=False))
        insight = None if session.insight_written is not None else self._insights.resource(session)
        if insight is not None:
            puts.append(insight)
        # Marked before the write: a flush meanwhile must not write the Dataplane with the
        # health from before this report (it would land after this and win).
        unstored, session.resource_written = not session.resource_written, True
        try:
            await self._records.write(puts)
        except StoreError:
            session.resource_written = not unstored
            if insight is not None:
                session.insight_dirty = True  # the flush, or the next report, tries again
            raise
        if insight is not None:
            session.insight_written = insight

    async def close_stale(self, after: float) -> None:
        """After a crash: proxies still marked connected to an instance that is gone (one
        process per zone: every instance but this one)."""
        await asyncio.sleep(after)
        await self.sweep(frozenset({self.instance_id}))

    async def sweep(self, alive: frozenset[str]) -> bool:
        """Closes what is marked connected to an instance not in `alive` and not live here
        (zone_cp.dpsweep runs it on the leader replica); False if a pass must look again."""
        live, ingresses = live_proxies(self.sessions.values())
        swept = await self._records.close_stale(alive | {self.instance_id}, live, ingresses)
        self.stale_closed += swept.closed
        return swept.clean


def defers_insight(session: Session, stored: Resource | None) -> bool:
    """Whether a registration leaves the proxy's insight to its first report (or the next
    flush) instead of writing it with its Dataplane, one of about five resource writes per
    stream registration (issue 19; the flush still writes it again once later ACKs change
    it: 5.0 -> 4.8 writes measured). Only a sidecar's first registration (no insight stored, no
    stream replaced) with nothing ready: a ready Dataplane always has an insight saying who
    holds it, and a stored one must show the new subscription at once, or a crash sweep's
    compare-and-swap on it would not see this connection (decision 179)."""
    return (
        session.kind is ProxyType.SIDECAR
        and stored is None
        and not session.history
        and not any(session.ready.values())
    )


def takeover_refusal(current: Session, announced: Resource) -> str | None:
    """Why a proxy announcing `announced` cannot take over the connected `current` of the
    same name (None: it is the same proxy again, whatever its inbounds' health)."""
    if dpstate.without_health(current.hello.resource) == dpstate.without_health(announced):
        return None
    return (
        f"{current.describe()} is connected with a different "
        f"{announced.type}; give this proxy another name"
    )


def live_proxies(sessions: Iterable[Session]) -> tuple[set[tuple[str, str]], set[str]]:
    """The connected sidecars' (mesh, name) and zone ingresses' names: the crash sweep
    leaves them alone."""
    sessions = list(sessions)
    live = {(s.mesh, s.name) for s in sessions if s.kind is ProxyType.SIDECAR}
    ingresses = {s.name for s in sessions if s.kind is ProxyType.INGRESS}
    return live, ingresses


def _reason(session: Session) -> str:
    return f" ({session.stop_reason})" if session.stop_reason else ""
