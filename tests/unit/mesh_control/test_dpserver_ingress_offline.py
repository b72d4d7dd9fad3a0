"""A zone ingress's proxy connection decides what it advertises, through the real config
server (gRPC on loopback) and ZoneServices over a memory store: connected, its zone's
services; disconnected, none; reconnected, them again; zone-cp stopping cleanly empties
nothing; after a crash, an ingress that did not reconnect is closed by the stale sweep; a
proxy process killed mid-stream is recorded offline although grpc cancels its handler."""

from __future__ import annotations

import asyncio
import sys

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.protocol import ProxyType
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.support import REPO, async_wait_until
from tests.unit.mesh_control.dpserver_support import (
    BACKEND,
    ZONE,
    Proxy,
    Zone,
    connect,
    start_zone,
    token_for,
    with_mesh_ca,
)
from zone_cp import dpstate
from zone_cp.dprecords import Records


def ingress_resource(name: str = "zi-1") -> Resource:
    return resource_from_dict(
        {
            "type": "ZoneIngress",
            "name": name,
            "networking": {"address": "127.0.0.8", "port": 10001},
        },
        default_registry(),
    )


async def advertised(store: MemoryStore, name: str = "zi-1") -> list[str]:
    res = await store.get("ZoneIngress", "", name)
    return [g["tags"]["kuma.io/service"] for g in res.spec.get("availableServices") or []]


async def until_advertised(store: MemoryStore, want: list[str], what: str) -> None:
    async def check() -> bool:
        return await advertised(store) == want

    await async_wait_until(check, timeout=5, what=what)


async def ready_backend(zone: Zone, proxies: list[Proxy]) -> Proxy:
    backend = await connect(zone, proxies, BACKEND)
    await backend.config()
    await backend.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=9090, ready=True)]))
    )
    return backend


async def test_an_ingress_advertises_only_while_its_proxy_is_connected(
    store: MemoryStore, proxies: list[Proxy]
) -> None:
    async for zone in start_zone(store):
        await ready_backend(zone, proxies)
        zi = await connect(zone, proxies, ingress_resource(), ProxyType.INGRESS)
        await zi.read()  # its config
        await until_advertised(store, ["backend"], "zi-1 advertises backend")

        await zi.close()
        await until_advertised(store, [], "zi-1 empty once its proxy is gone")
        insight = await store.get("ZoneIngressInsight", "", "zi-1")
        assert dpstate.proxy_disconnected(insight)

        again = await connect(zone, proxies, ingress_resource(), ProxyType.INGRESS)
        await again.read()
        await until_advertised(store, ["backend"], "zi-1 advertises backend again")
        insight = await store.get("ZoneIngressInsight", "", "zi-1")
        assert len(insight.spec["subscriptions"]) == 2

    # zone-cp stopped cleanly with the proxy connected: nothing marked offline.
    assert await advertised(store) == ["backend"]
    insight = await store.get("ZoneIngressInsight", "", "zi-1")
    assert not dpstate.proxy_disconnected(insight)


async def test_an_ingress_put_through_the_api_keeps_advertising(
    store: MemoryStore, proxies: list[Proxy]
) -> None:
    await store.create(ingress_resource("zi-api"))
    async for zone in start_zone(store):
        await ready_backend(zone, proxies)

        async def check() -> bool:
            return await advertised(store, "zi-api") == ["backend"]

        await async_wait_until(check, timeout=5, what="zi-api advertises backend")


async def test_the_crash_sweep_closes_an_ingress_that_did_not_reconnect(
    store: MemoryStore,
) -> None:
    records = Records(store, ZONE)
    for name in ("gone", "back", "mine"):
        await store.create(dpstate.registered_ingress(ingress_resource(name), ZONE, None))
    for name, instance in (("gone", "old-cp"), ("back", "old-cp"), ("mine", "new-cp")):
        sub = dpstate.Subscription(f"{name}-sub", instance, "t0", "v").to_json()
        await records.write_insight("ingress", "", name, [sub], None, None)

    assert (await records.close_stale({"new-cp"}, live=set(), live_ingresses={"back"})).closed == 1
    closed = {
        name: dpstate.proxy_disconnected(await store.get("ZoneIngressInsight", "", name))
        for name in ("gone", "back", "mine")
    }
    assert closed == {"gone": True, "back": False, "mine": False}
    assert (await records.close_stale({"new-cp"}, live=set())).closed == 1  # "back" went away since


class SlowInsights(MemoryStore):
    """Insight writes take a while, as on SQLite's thread or etcd: long enough for grpc to
    cancel the handler of a stream whose peer died while the write is in flight."""

    async def update(self, resource: Resource, expected_version: str | None = None) -> Resource:
        if resource.type == "ZoneIngressInsight":
            await asyncio.sleep(0.3)
        return await super().update(resource, expected_version=expected_version)


# A proxy in a child process: Hello, then it reads configs until it is killed.
CHILD = """
import sys, threading, grpc
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.dpconfig.protocol import ProxyType, hello_message
ingress = {"type": "ZoneIngress", "name": "zi-1", "networking": {"address": "127.0.0.8", "port": 1}}
def requests():
    yield hello_message(ProxyType.INGRESS, ingress, proxy_version="child/1")
    threading.Event().wait()
channel = grpc.insecure_channel(sys.argv[1])
metadata = (("authorization", "Bearer " + sys.argv[2]),)
for _ in pb_grpc.DataplaneConfigStub(channel).Stream(requests(), metadata=metadata):
    pass
"""


async def test_a_killed_proxy_is_recorded_offline_though_grpc_cancels_its_stream() -> None:
    store = await with_mesh_ca(SlowInsights())
    async for zone in start_zone(store):
        token = await token_for(store, ingress_resource(), ProxyType.INGRESS)
        assert token is not None
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(zone.address), token, cwd=REPO
        )
        try:

            async def connected() -> bool:
                insight = await store.get("ZoneIngressInsight", "", "zi-1")
                return insight is not None and not dpstate.proxy_disconnected(insight)

            await async_wait_until(connected, timeout=10, what="the child proxy connected")
            child.kill()  # SIGKILL: grpc sees the connection die, not a clean end
            await child.wait()

            async def closed() -> bool:
                insight = await store.get("ZoneIngressInsight", "", "zi-1")
                return dpstate.proxy_disconnected(insight)

            await async_wait_until(closed, timeout=5, what="the disconnection in the insight")
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    await store.close()
