"""The gRPC glue over real loopback gRPC: a KdsServer and KdsClients in this process.

Both ends run the real engine; each side's store is a dict. Misbehaving peers (a zone that
never sends heartbeats, a global that never answers them) are raw gRPC calls or a server that
does not reply: real sockets, no mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import pytest

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.backoff import Backoff
from meshfed.kds.client import CONNECTED, KdsClient, StaleConnection
from meshfed.kds.convert import request_to_pb, response_to_pb
from meshfed.kds.messages import SyncRequest, SyncResponse, WireResource, to_wire
from meshfed.kds.receiver import ChangeSet, Receiver
from meshfed.kds.server import KdsServer, ZoneRejected
from meshfed.kds.stream import CLIENT_ID, DictSource, ReceiveSide, grpc_options
from meshfed.resources.model import Key, Meta, Resource
from tests.support import async_wait_until, free_port
from tests.unit.kds.zone_keys import KEYS

MTP = "MeshTrafficPermission"
DP = "Dataplane"
DOWN = [MTP]
UP = [DP]


@dataclass
class Sink:
    """A dict store with an atomic apply, recording every change set it applied."""

    data: dict[tuple[str, Key], Resource] = field(default_factory=dict)
    applied: list[ChangeSet] = field(default_factory=list)

    async def apply(self, changes: ChangeSet) -> None:
        for r in changes.upserts:
            self.data[(r.type, Key(r.mesh, r.name))] = r
        for key in changes.removes:
            self.data.pop((changes.type, key), None)
        self.applied.append(changes)

    def digest(self) -> dict[tuple[str, Key], str]:
        return {k: r.content_hash() for k, r in self.data.items()}

    def held(self) -> dict[str, dict[Key, str]]:
        held: dict[str, dict[Key, str]] = {}
        for (t, key), r in self.data.items():
            held.setdefault(t, {})[key] = r.content_hash()
        return held

    def removed_keys(self) -> list[Key]:
        return [k for cs in self.applied for k in cs.removes]


def digest(source: DictSource, types: list[str]) -> dict[tuple[str, Key], str]:
    return {(t, k): w.version for t in types for k, w in source.get(t).items()}


def accept(_r: Resource) -> str | None:
    return None


class Hooks:
    """The global's side: one policy source for every zone, one sink per zone."""

    def __init__(self, source: DictSource | None = None) -> None:
        self.source = source or DictSource()
        self.sinks: dict[str, Sink] = {}
        self.events: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    async def zone_connected(self, zone: str) -> None:
        if zone in self.refuse:
            raise ZoneRejected(f"zone {zone!r} is disabled")
        self.events.append(("connected", zone))

    async def zone_disconnected(self, zone: str) -> None:
        self.events.append(("disconnected", zone))

    async def down_source(self, zone: str) -> DictSource:
        return self.source

    async def up_side(self, zone: str) -> ReceiveSide:
        sink = self.sinks.setdefault(zone, Sink())
        return ReceiveSide(Receiver(UP, held=sink.held()), sink.apply, accept)


@contextlib.asynccontextmanager
async def serving(servicer: pb_grpc.KDSServicer, port: int) -> AsyncIterator[None]:
    server = grpc.aio.server(options=grpc_options(1024 * 1024))
    pb_grpc.add_KDSServicer_to_server(servicer, server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    try:
        yield
    finally:
        await server.stop(grace=None)


@dataclass
class Zone:
    name: str
    port: int
    source: DictSource = field(default_factory=DictSource)
    sink: Sink = field(default_factory=Sink)
    validate: Callable[[Resource], str | None] = accept
    client: KdsClient | None = None
    task: asyncio.Task[None] | None = None
    receiver: Receiver = field(default_factory=lambda: Receiver(DOWN))

    def start(self, **kwargs: float) -> KdsClient:
        self.client = KdsClient(
            f"127.0.0.1:{self.port}",
            self.name,
            up_types=UP,
            source=self.source,
            down=ReceiveSide(self.receiver, self.sink.apply, self.validate),
            backoff=Backoff(initial=0.02, maximum=0.2),
            stale_timeout=kwargs.get("stale_timeout", 3.0),
            max_message_size=int(kwargs.get("max_message_size", 1024 * 1024)),
            token=KEYS.token(self.name),
        )
        self.task = asyncio.create_task(self.client.run())
        return self.client

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    async def check() -> object:
        return predicate()

    await async_wait_until(check, timeout=timeout, what=what)


def policy(name: str, **spec: object) -> WireResource:
    return to_wire(Resource(MTP, Meta(name=name, mesh="default"), dict(spec)))


def dataplane(name: str, **spec: object) -> WireResource:
    return to_wire(Resource(DP, Meta(name=name, mesh="default"), dict(spec)))


def fast_global(
    hooks: Hooks,
    cls: type[KdsServer] = KdsServer,
    *,
    stale_timeout: float = 3.0,
    max_message_size: int = 1024 * 1024,
) -> KdsServer:
    return cls(
        hooks,
        DOWN,
        authenticator=KEYS.authenticator(),
        health_interval=0.05,
        stale_timeout=stale_timeout,
        max_message_size=max_message_size,
    )


def synced(zone: Zone, source: DictSource) -> Callable[[], bool]:
    return lambda: zone.sink.digest() == digest(source, DOWN)


async def test_both_directions_sync_and_changes_propagate() -> None:
    port = free_port()
    hooks = Hooks()
    for i in range(3):
        hooks.source.put(MTP, policy(f"p{i}", action="Allow"))
    kds = fast_global(hooks)
    zone = Zone("zone-1", port)
    zone.source.put(DP, dataplane("web", port=80))
    async with serving(kds, port):
        client = zone.start()
        try:
            await until(lambda: zone.sink.digest() == digest(hooks.source, DOWN), "policies down")
            await until(
                lambda: (
                    "zone-1" in hooks.sinks
                    and hooks.sinks["zone-1"].digest() == digest(zone.source, UP)
                ),
                "dataplanes up",
            )
            await until(lambda: client.state == CONNECTED, "heartbeat answered")
            session = kds.sessions["zone-1"]
            assert session.connected and hooks.events == [("connected", "zone-1")]
            await until(lambda: session.health_checks >= 2, "heartbeats recorded")
            assert session.last_health_check_time is not None

            hooks.source.put(MTP, policy("p0", action="Deny"))
            hooks.source.delete(MTP, Key("default", "p1"))
            zone.source.put(DP, dataplane("web", port=8080))
            zone.source.put(DP, dataplane("db", port=5432))
            await until(lambda: zone.sink.digest() == digest(hooks.source, DOWN), "update down")
            await until(
                lambda: hooks.sinks["zone-1"].digest() == digest(zone.source, UP), "update up"
            )
            assert zone.sink.removed_keys() == [Key("default", "p1")]
            assert session.down is not None
            assert (
                session.down.acked_version(MTP, Key("default", "p0"))
                == policy("p0", action="Deny").version
            )
            assert client.sessions == 1  # one session carried it all
        finally:
            await zone.stop()
    await until(lambda: not kds.sessions["zone-1"].connected, "zone marked disconnected")
    assert hooks.events[-1] == ("disconnected", "zone-1")


async def test_reconnect_resumes_with_only_the_difference() -> None:
    port = free_port()
    hooks = Hooks()
    for i in range(1000):
        hooks.source.put(MTP, policy(f"p{i:04}", n=i))
    kds = fast_global(hooks)
    zone = Zone("zone-1", port)
    async with serving(kds, port):
        zone.start()
        await until(lambda: zone.sink.digest() == digest(hooks.source, DOWN), "cold sync")
        await zone.stop()
        await until(lambda: not kds.sessions["zone-1"].connected, "disconnected")
        hooks.source.put(MTP, policy("p0500", n=-1))
        zone.start()
        try:
            await until(lambda: zone.sink.digest() == digest(hooks.source, DOWN), "resumed")
            down = kds.sessions["zone-1"].down
            assert down is not None
            await until(lambda: down.in_sync(MTP), "in sync")
            assert down.insight(MTP).resources_sent == 1
            assert down.insight(MTP).removals_sent == 0
        finally:
            await zone.stop()


async def test_global_outage_deletes_nothing_and_zones_converge_after_restart() -> None:
    port = free_port()
    source = DictSource()
    for i in range(20):
        source.put(MTP, policy(f"p{i}"))
    zones = [Zone(f"zone-{n}", port) for n in (1, 2)]
    for z in zones:
        z.source.put(DP, dataplane(f"dp-{z.name}"))
    hooks = Hooks(source)
    async with serving(fast_global(hooks), port):
        for z in zones:
            z.start()
        for z in zones:
            await until(synced(z, source), f"{z.name} synced")
    # The global is gone: zones keep everything while they retry.
    await until(
        lambda: all(z.client is not None and z.client.sessions >= 3 for z in zones),
        "zones retrying",
    )
    source.put(MTP, policy("p0", changed=True))
    source.delete(MTP, Key("default", "p1"))
    assert all(len(z.sink.data) == 20 for z in zones)
    hooks2 = Hooks(source)  # a restarted global: empty zone sinks would be rebuilt from a store
    try:
        async with serving(fast_global(hooks2), port):
            for z in zones:
                await until(synced(z, source), f"{z.name} reconverged")
            await until(lambda: len(hooks2.sinks) == 2, "inventory back up")
        for z in zones:
            # the only removal any zone ever applied is the one made at the global
            assert z.sink.removed_keys() == [Key("default", "p1")]
    finally:
        for z in zones:
            await z.stop()


async def test_rejected_resource_is_nacked_and_the_stream_stays_up() -> None:
    port = free_port()
    hooks = Hooks()
    for name in ("a", "b", "c"):
        hooks.source.put(MTP, policy(name, bad=(name == "b")))
    kds = fast_global(hooks)
    zone = Zone(
        "zone-1", port, validate=lambda r: "spec.bad: not allowed" if r.spec["bad"] else None
    )
    async with serving(kds, port):
        client = zone.start()
        try:
            await until(lambda: len(zone.sink.data) == 2, "valid ones applied")
            session = kds.sessions["zone-1"]
            down = session.down
            assert down is not None
            await until(lambda: down.insight(MTP).responses_nacked == 1, "NACK seen by the global")
            assert "'b'" in down.insight(MTP).last_nack_error
            assert down.insight(MTP).rejected == {str(Key("default", "b")): "spec.bad: not allowed"}
            hooks.source.put(MTP, policy("b", bad=False))
            await until(lambda: len(zone.sink.data) == 3, "fixed resource applied")
            assert session.connected and client.sessions == 1
        finally:
            await zone.stop()


async def test_zone_without_heartbeats_is_closed_as_stale() -> None:
    port = free_port()
    hooks = Hooks()
    kds = fast_global(hooks, stale_timeout=0.5)
    async with serving(kds, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.KDSStub(channel)
        call = stub.GlobalToZoneSync(None, metadata=KEYS.metadata("silent"))
        await call.write(request_to_pb(SyncRequest(MTP)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async with asyncio.timeout(10):
                while True:
                    await call.read()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no heartbeat or message from zone 'silent'" in (err.value.details() or "")
        assert not kds.sessions["silent"].connected
        assert hooks.events == [("connected", "silent"), ("disconnected", "silent")]


class SilentGlobal(KdsServer):
    """A global whose streams are open but which never answers a heartbeat."""

    async def HealthCheck(
        self, request: pb.HealthCheckRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.HealthCheckResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_zone_detects_a_global_that_stopped_answering() -> None:
    port = free_port()
    async with serving(fast_global(Hooks(), SilentGlobal), port):
        zone = Zone("zone-1", port)
        client = KdsClient(
            f"127.0.0.1:{port}",
            "zone-1",
            up_types=UP,
            source=zone.source,
            down=ReceiveSide(zone.receiver, zone.sink.apply, accept),
            stale_timeout=0.5,
            token=KEYS.token("zone-1"),
        )
        with pytest.raises(StaleConnection, match="no heartbeat answer from the global"):
            async with asyncio.timeout(10):
                await client.run_once()


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [((), "missing gRPC metadata 'client-id'"), (((CLIENT_ID, "Bad Zone!"),), "invalid zone")],
)
async def test_zone_identity_is_required(
    metadata: tuple[tuple[str, str], ...], fragment: str
) -> None:
    port = free_port()
    hooks = Hooks()
    async with (
        serving(fast_global(hooks), port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = pb_grpc.KDSStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.HealthCheck(pb.HealthCheckRequest(), metadata=metadata, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (err.value.details() or "")
        call = stub.ZoneToGlobalSync(None, metadata=metadata, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert fragment in (err.value.details() or "")
    assert hooks.events == []


async def test_refused_zone_gets_the_reason() -> None:
    port = free_port()
    hooks = Hooks()
    hooks.refuse.add("zone-9")
    async with (
        serving(fast_global(hooks), port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = pb_grpc.KDSStub(channel).GlobalToZoneSync(
            None, metadata=KEYS.metadata("zone-9"), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "zone 'zone-9' is disabled" in (err.value.details() or "")


async def test_a_new_stream_replaces_the_old_one_of_the_same_zone() -> None:
    port = free_port()
    hooks = Hooks()
    hooks.source.put(MTP, policy("a"))
    kds = fast_global(hooks)
    async with serving(kds, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.KDSStub(channel)
        md = KEYS.metadata("zone-1")
        old = stub.GlobalToZoneSync(None, metadata=md)
        await old.write(request_to_pb(SyncRequest(MTP)))
        first = await old.read()
        assert isinstance(first, pb.SyncResponse) and first.resources[0].name == "a"
        new = stub.GlobalToZoneSync(None, metadata=md)
        await new.write(request_to_pb(SyncRequest(MTP)))
        again = await new.read()
        assert isinstance(again, pb.SyncResponse) and again.resources[0].name == "a"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await old.read()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "replaced by a newer stream" in (err.value.details() or "")
        assert kds.sessions["zone-1"].connected
        assert hooks.events == [("connected", "zone-1")]
        new.cancel()


async def test_heavy_traffic_both_ways_does_not_deadlock() -> None:
    """Thousands of resources each way at once, in many size-limited responses."""
    port = free_port()
    rng = random.Random(7)
    blob = "".join(rng.choice("abcdefgh") for _ in range(2000))
    hooks = Hooks()
    zone = Zone("zone-1", port)
    for i in range(3000):
        hooks.source.put(MTP, policy(f"p{i}", blob=blob, i=i))
        zone.source.put(DP, dataplane(f"d{i}", blob=blob, i=i))
    limit = 128 * 1024
    kds = fast_global(hooks, max_message_size=limit)
    async with serving(kds, port):
        zone.start(max_message_size=limit)
        try:
            await until(
                lambda: zone.sink.digest() == digest(hooks.source, DOWN), "down", timeout=60
            )
            await until(
                lambda: (
                    "zone-1" in hooks.sinks
                    and hooks.sinks["zone-1"].digest() == digest(zone.source, UP)
                ),
                "up",
                timeout=60,
            )
            down = kds.sessions["zone-1"].down
            assert down is not None and down.insight(MTP).responses_sent > 40
        finally:
            await zone.stop()


def test_backoff_grows_with_jitter_caps_and_resets() -> None:
    b = Backoff(initial=0.1, maximum=2.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(12)]
    for n, d in enumerate(delays):
        ceiling = min(2.0, 0.1 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 2.0 and delays[-1] >= 1.0
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 0.1


async def test_a_zone_cannot_send_types_it_does_not_own() -> None:
    port = free_port()
    hooks = Hooks()
    kds = fast_global(hooks)
    async with serving(kds, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.KDSStub(channel).ZoneToGlobalSync(
            None, metadata=KEYS.metadata("zone-1"), timeout=10
        )
        subscribe = await call.read()
        assert isinstance(subscribe, pb.SyncRequest) and subscribe.type == DP
        await call.write(response_to_pb(SyncResponse(MTP, [policy("sneaky")], nonce="1")))
        nack = await call.read()
        assert isinstance(nack, pb.SyncRequest)
        assert nack.response_nonce == "1" and nack.HasField("error_detail")
        assert "'MeshTrafficPermission' is not accepted" in nack.error_detail.message
        assert hooks.sinks["zone-1"].data == {}
        call.cancel()


class BrokenHooks(Hooks):
    async def zone_connected(self, zone: str) -> None:
        raise RuntimeError("store unavailable")


async def test_a_failing_connect_hook_ends_the_stream_and_leaves_the_zone_offline() -> None:
    port = free_port()
    kds = fast_global(BrokenHooks())
    async with serving(kds, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.KDSStub(channel).GlobalToZoneSync(
            None, metadata=KEYS.metadata("zone-1"), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "store unavailable" in (err.value.details() or "")
        assert not kds.sessions["zone-1"].connected
        assert not kds.sessions["zone-1"].announced
