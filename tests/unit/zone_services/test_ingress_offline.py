"""A zone ingress whose proxy is disconnected advertises nothing: which own ingresses get
which `availableServices` given their insights (pure), that another zone's catalog then has
no endpoint through it, and ZoneServices following the insights in a real (memory) store."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.resources.model import Meta, Resource, now_rfc3339
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from zone_cp import dpstate
from zone_cp.catalog import ingress_updates, own_available_services, zone_catalog
from zone_cp.services import ZoneServices

ZONE = "zone-2"
CIDR = ipaddress.IPv4Network("127.1.0.0/16")


def dataplane(name: str, service: str) -> Resource:
    inbound = {"port": 8080, "tags": {"kuma.io/service": service}, "health": {"ready": True}}
    spec = {"networking": {"address": "127.0.0.1", "inbound": [inbound]}}
    return Resource("Dataplane", Meta(name=name, mesh="default"), spec)


def ingress(name: str, services: list[dict[str, Any]] | None = None) -> Resource:
    spec: dict[str, Any] = {"zone": ZONE, "networking": {"address": "127.0.0.1", "port": 10001}}
    if services is not None:
        spec["availableServices"] = services
    return Resource("ZoneIngress", Meta(name=name, version="3"), spec)


def relayed(name: str, zone: str, services: list[dict[str, Any]]) -> Resource:
    """Another zone's ingress as the global relays it."""
    labels = {"kuma.io/origin": "global", "kuma.io/zone": zone}
    spec = {"networking": {"address": "127.0.0.9", "port": 10001}, "availableServices": services}
    return Resource("ZoneIngress", Meta(name=name, labels=labels), spec)


def subscription(n: int, closed: bool) -> dict[str, Any]:
    sub = dpstate.Subscription(f"sub-{n}", "cp-1", "t0", "test/1").to_json()
    if closed:
        sub["disconnectTime"] = "t1"
    return sub


def insight(name: str, *closed: bool) -> Resource:
    """A ZoneIngressInsight with one subscription per entry of `closed`, oldest first."""
    subs = [subscription(i, c) for i, c in enumerate(closed)]
    return dpstate.insight_resource("ingress", "", name, ZONE, subs)


AVAILABLE = own_available_services(ZONE, {"default"}, [dataplane("b-1", "backend")])


def test_the_insight_tells_whether_the_ingress_proxy_is_disconnected() -> None:
    assert not dpstate.proxy_disconnected(None)  # put through the API: no proxy ever
    assert not dpstate.proxy_disconnected(insight("zi"))  # no subscription at all
    assert not dpstate.proxy_disconnected(insight("zi", False))  # connected
    assert dpstate.proxy_disconnected(insight("zi", False, True))  # its last one closed
    assert not dpstate.proxy_disconnected(insight("zi", True, False))  # reconnected


def test_a_disconnected_ingress_advertises_nothing_and_the_others_keep_theirs() -> None:
    up, down = ingress("up", []), ingress("down", AVAILABLE)
    updates = ingress_updates(ZONE, [up, down], AVAILABLE, offline={"down"})
    assert {u.name: u.spec["availableServices"] for u in updates} == {
        "up": AVAILABLE,
        "down": [],
    }
    assert all(u.meta.version == "3" for u in updates)  # for a conditional update
    # Already as it should be: nothing to write. Back online: its services again.
    emptied = {u.name: u for u in updates}["down"]
    assert ingress_updates(ZONE, [emptied], AVAILABLE, offline={"down"}) == []
    (back,) = ingress_updates(ZONE, [emptied], AVAILABLE, offline=frozenset())
    assert back.spec["availableServices"] == AVAILABLE
    # Another zone's relayed ingress is never ours to rewrite, offline or not.
    assert ingress_updates(ZONE, [relayed("down", "zone-3", [])], AVAILABLE, {"down"}) == []


def test_another_zone_gets_no_endpoint_through_an_ingress_with_no_services() -> None:
    with_backend = relayed("zi-2.abc", ZONE, AVAILABLE)
    emptied = relayed("zi-2.abc", ZONE, [])
    catalog = zone_catalog("zone-1", {"default"}, [], [with_backend])
    entry = catalog.get("default", "backend")
    assert entry is not None and [r.ingress for r in entry.remote] == ["zi-2.abc"]

    assert catalog_services(zone_catalog("zone-1", {"default"}, [], [emptied])) == []
    # A second ingress of that zone still up: the service stays, through that one only.
    other = relayed("zi-2b.def", ZONE, AVAILABLE)
    entry = zone_catalog("zone-1", {"default"}, [], [emptied, other]).get("default", "backend")
    assert entry is not None and [r.ingress for r in entry.remote] == ["zi-2b.def"]


def catalog_services(catalog: Any) -> list[str]:
    return [e.service for e in catalog]


# -- ZoneServices over a store ----------------------------------------------------------------


@pytest.fixture
async def services() -> AsyncIterator[tuple[MemoryStore, ZoneServices]]:
    store = MemoryStore()
    await store.create(Resource("Mesh", Meta(name="default")))
    await store.create(dataplane("b-1", "backend"))
    zs = ZoneServices(store, ZONE, CIDR)
    await zs.start()
    yield store, zs
    await zs.stop()
    await store.close()


async def advertised(store: MemoryStore, name: str) -> list[str]:
    res = await store.get("ZoneIngress", "", name)
    return [g["tags"]["kuma.io/service"] for g in res.spec.get("availableServices") or []]


async def until_advertised(store: MemoryStore, name: str, want: list[str], what: str) -> None:
    async def check() -> bool:
        return await advertised(store, name) == want

    await async_wait_until(check, timeout=5, what=what)


async def test_services_follow_the_ingress_insight(
    services: tuple[MemoryStore, ZoneServices],
) -> None:
    store, _ = services
    # Put through the API, no proxy ever connected (no insight): it advertises.
    await store.create(ingress("zi-api"))
    await until_advertised(store, "zi-api", ["backend"], "the API-put ingress advertises")

    # A proxy connected: advertises; disconnected: nothing; reconnected: its services again.
    await store.create(ingress("zi-1"))
    await store.create(insight("zi-1", False))
    await until_advertised(store, "zi-1", ["backend"], "zi-1 advertises")
    await store.update(insight("zi-1", False, True))
    await until_advertised(store, "zi-1", [], "zi-1 emptied while its proxy is gone")
    assert await advertised(store, "zi-api") == ["backend"]
    await store.update(insight("zi-1", False, True, False))
    await until_advertised(store, "zi-1", ["backend"], "zi-1 advertises again")

    # A new instance while it is offline is not advertised through it either.
    await store.update(insight("zi-1", False, True, False, True))
    await until_advertised(store, "zi-1", [], "zi-1 emptied again")
    await store.create(dataplane("w-1", "web"))
    await until_advertised(store, "zi-api", ["backend", "web"], "web through zi-api")
    assert await advertised(store, "zi-1") == []

    # Its insight deleted (the ingress deregistered): no proxy on record, it advertises.
    await store.delete("ZoneIngressInsight", "", "zi-1")
    await until_advertised(store, "zi-1", ["backend", "web"], "zi-1 without an insight")


async def test_a_restart_keeps_what_the_insights_say() -> None:
    """zone-cp starting over a store: an ingress whose proxy was disconnected stays empty; one
    still marked connected (zone-cp stopped cleanly, its proxy will reconnect) advertises."""
    store = MemoryStore()
    await store.create(Resource("Mesh", Meta(name="default")))
    await store.create(dataplane("b-1", "backend"))
    for name, closed in (("zi-down", True), ("zi-up", False)):
        await store.create(ingress(name, []))
        await store.create(insight(name, closed))
    zs = ZoneServices(store, ZONE, CIDR)
    await zs.start()  # its first pass has run when start returns
    try:
        assert await advertised(store, "zi-up") == ["backend"]
        assert await advertised(store, "zi-down") == []
    finally:
        await zs.stop()
        await store.close()


def closed_now(insight_res: Resource) -> Resource:
    """The insight with its last subscription closed now (a real time, not "t1")."""
    subs = dpstate.previous_subscriptions(insight_res)
    subs[-1]["disconnectTime"] = now_rfc3339()
    return insight_res


async def test_a_restarting_ingress_keeps_advertising_within_the_grace() -> None:
    """Issue 16: an ingress that restarts made every other zone drop and re-add its services.
    Disconnected for less than the grace it still advertises; reconnected within it, its
    availableServices are never emptied; disconnected for longer, they are."""
    store = MemoryStore()
    await store.create(Resource("Mesh", Meta(name="default")))
    await store.create(dataplane("b-1", "backend"))
    await store.create(ingress("zi-1"))
    await store.create(insight("zi-1", False))
    zs = ZoneServices(store, ZONE, CIDR, ingress_grace=1.0)
    await zs.start()
    seen: list[list[str]] = []

    async def sample(seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < end:
            seen.append(await advertised(store, "zi-1"))
            await asyncio.sleep(0.02)

    try:
        await until_advertised(store, "zi-1", ["backend"], "zi-1 advertises")
        await store.update(closed_now(insight("zi-1", False, True)))  # the restart begins
        await sample(0.4)
        await store.update(insight("zi-1", False, True, False))  # back within the grace
        await sample(1.2)  # past the grace: never emptied meanwhile
        assert seen and all(s == ["backend"] for s in seen), seen

        # A death: disconnected for longer than the grace, emptied once the grace is over.
        began = asyncio.get_running_loop().time()
        await store.update(closed_now(insight("zi-1", False, True, False, True)))
        await until_advertised(store, "zi-1", [], "zi-1 emptied after the grace")
        assert asyncio.get_running_loop().time() - began >= 0.8
    finally:
        await zs.stop()
        await store.close()
