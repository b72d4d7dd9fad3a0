"""The config pusher's incremental rebuilds equal a full rebuild (issue 19).

On random runs of sidecars connecting (stored not ready, as the registration does), reporting
ready, leaving, and zone egresses coming and going, with the services pass publishing a
snapshot and the pusher rebuilding only the dirty proxies and the callers of the services
that changed, every connected sidecar ends up with the config (the version: the hash of the
bytes sent) that a fresh pusher building everyone from the same state gives it. So skipping
the callers of an endpoint that is not ready, reusing a session's DataplaneView and keeping
the egress list between passes change no config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.catalog import VipKey
from meshfed.dpconfig.protocol import Hello, ProxyType
from meshfed.resources.model import Resource
from meshfed.resources.types.mesh import MESH
from tests.unit.policy.factories import dataplane, inbound, mesh_resource, resource
from zone_cp import dpstate
from zone_cp.catalog import ZoneCatalog
from zone_cp.certs import CertIssuer
from zone_cp.dns import NameSet
from zone_cp.dpbuild import Wants
from zone_cp.dppusher import ConfigPusher
from zone_cp.dpsession import Session
from zone_cp.services import ServiceSnapshot

ZONE = "zone-1"
SERVICES = ["a", "b"]
NAMES = [f"dp-{i}" for i in range(3)]
VIPS = {VipKey("default", s): f"240.0.0.{i + 1}" for i, s in enumerate(SERVICES)}


class Services:
    """What the pusher reads of zone_cp.services: the snapshot, and its listeners."""

    def __init__(self) -> None:
        self.catalog = ZoneCatalog(ZONE)
        self.catalog.reset(["default"], [], [])
        self.snapshot = ServiceSnapshot(ZONE, self.catalog.catalog(), dict(VIPS), NameSet())
        self._listeners: list[Callable[[ServiceSnapshot], None]] = []

    def listen(self, listener: Callable[[ServiceSnapshot], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: None

    def put(self, res: Resource) -> None:
        self.catalog.put(res.type, res.mesh, res.name, res)

    def publish(self) -> None:
        """A services pass: the catalog's changed services, as zone_cp.services names them."""
        changed = self.catalog.take_changed()
        old = self.snapshot
        self.snapshot = ServiceSnapshot(
            ZONE,
            self.catalog.catalog(),
            old.vips,
            old.names,
            old.generation + 1,
            (),
            frozenset(changed),
        )
        for listener in self._listeners:
            listener(self.snapshot)


def sidecar_resource(name: str, service: str, ready: bool) -> Resource:
    announced = dataplane(name, inbound(service, 8080), address=f"10.0.0.{NAMES.index(name) + 1}")
    registered = dpstate.registered_dataplane(announced, ZONE, None)
    return dpstate.with_health(registered, {0: ready}, default=False)


def egress_resource(name: str) -> Resource:
    return resource(
        {"type": "ZoneEgress", "name": name, "networking": {"address": "127.0.0.5", "port": 10002}}
    )


def session(res: Resource, reachable: frozenset[str] | None) -> Session:
    kind = ProxyType.SIDECAR if res.type == "Dataplane" else ProxyType.EGRESS
    return Session(
        hello=Hello(kind, res, "test", reachable=reachable),
        resource=res,
        wants=Wants.of(kind, res, reachable),
        subscription=dpstate.Subscription("sub-1", "cp-1", "2024-01-01T00:00:00Z", "test"),
        history=[],
        ready=dpstate.health_of(res),
    )


def pusher_of(services: Services, sessions: dict[Any, Session]) -> ConfigPusher:
    mesh = mesh_resource(mtls=False)
    pusher = ConfigPusher(
        ZONE,
        services,  # type: ignore[arg-type]  # the snapshot and listen are all it reads
        CertIssuer(),
        sessions,
        lambda type_name: [mesh] if type_name == MESH.name else [],
    )
    pusher.follow_services()
    return pusher


def pass_(services: Services, pusher: ConfigPusher, sessions: dict[Any, Session]) -> None:
    services.publish()
    pusher.rebuild(pusher._dirty.take(sessions))


def last_version(s: Session) -> str:
    version = ""
    while not s.outbox.empty():
        msg: pb.CpMessage = s.outbox.get_nowait()
        if msg.WhichOneof("message") == "config":
            version = msg.config.version
    return version or s.subscription.config_sent


OPS = st.one_of(
    st.tuples(
        st.just("connect"),
        st.sampled_from(NAMES),
        st.sampled_from(SERVICES),
        st.one_of(st.none(), st.frozensets(st.sampled_from(SERVICES), max_size=2)),
    ),
    st.tuples(st.just("report"), st.sampled_from(NAMES)),
    st.tuples(st.just("leave"), st.sampled_from(NAMES)),
    st.tuples(st.just("egress"), st.booleans()),
)
STEPS = st.lists(st.tuples(OPS, st.booleans()), max_size=20)  # (what happens, then a pass?)


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_incremental_rebuilds_end_where_a_full_build_does(steps: list[Any]) -> None:
    services = Services()
    sessions: dict[Any, Session] = {}
    pusher = pusher_of(services, sessions)
    services_of: dict[str, str] = {}
    for step, then_pass in steps:
        if step[0] == "connect":
            _, name, service, reachable = step
            key = ("Dataplane", "default", name)
            if key in sessions:
                continue
            res = sidecar_resource(name, service, ready=False)  # not ready until it reports
            services_of[name] = service
            services.put(res)
            sessions[key] = session(res, reachable)
            pusher.invalidate(key)
        elif step[0] == "report":
            key = ("Dataplane", "default", step[1])
            if key in sessions:
                services.put(sidecar_resource(step[1], services_of[step[1]], ready=True))
        elif step[0] == "leave":
            key = ("Dataplane", "default", step[1])
            if sessions.pop(key, None) is not None:
                services.put(sidecar_resource(step[1], services_of[step[1]], ready=False))
                pusher.forget(key)
        elif step[0] == "egress":
            key = ("ZoneEgress", "", "egress-1")
            if step[1] and key not in sessions:
                sessions[key] = session(egress_resource("egress-1"), None)
                pusher.invalidate()  # as zone_cp.dpserver does for an egress
            elif not step[1] and sessions.pop(key, None) is not None:
                pusher.forget(key)
                pusher.invalidate()
        if then_pass:
            pass_(services, pusher, sessions)
    pass_(services, pusher, sessions)
    got = {k: last_version(s) for k, s in sessions.items() if k[0] == "Dataplane"}

    fresh_sessions = {k: session(s.resource, s.hello.reachable) for k, s in sessions.items()}
    fresh = pusher_of(services, fresh_sessions)
    fresh.invalidate()
    fresh.rebuild(fresh._dirty.take(fresh_sessions))
    want = {k: last_version(s) for k, s in fresh_sessions.items() if k[0] == "Dataplane"}
    assert got == want
    assert all(want.values())  # every sidecar has a config


def test_the_egress_list_follows_egresses_coming_and_going() -> None:
    services = Services()
    sessions: dict[Any, Session] = {}
    pusher = pusher_of(services, sessions)
    assert pusher._egresses() == []
    egress = session(egress_resource("egress-1"), None)
    sessions[egress.key] = egress
    pusher.invalidate()  # zone_cp.dpserver: an egress registered
    assert pusher._egresses() == [egress.resource]
    web = session(sidecar_resource("dp-0", "a", ready=False), None)
    sessions[web.key] = web
    pusher.invalidate(web.key)  # a sidecar does not change the list
    assert pusher._egresses() == [egress.resource]
    del sessions[egress.key]  # a takeover in progress: the old session gone, nothing told yet
    assert pusher._egresses() == []
    again = session(egress_resource("egress-1"), None)
    sessions[again.key] = again
    pusher.invalidate()
    assert pusher._egresses() == [again.resource]
    del sessions[again.key]
    pusher.forget(again.key)
    assert pusher._egresses() == []
