"""MeshServices in the zone's services pass (issue 17): generated per kuma.io/service by the
Mesh's meshServices.mode, a VIP from the zone's range kept across a restart, hostnames from
HostnameGenerators with conflicts reported in the status, and the synced copies of another
zone's MeshServices resolved through that zone's ingress."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.dpconfig.meshservices import MESH_SERVICE, vip_key
from meshfed.resources.model import Meta, Resource
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from zone_cp.services import ZoneServices

ZONE = "zone-1"
CIDR = ipaddress.IPv4Network("127.1.0.0/16")


def mesh(mode: str | None) -> Resource:
    spec = {} if mode is None else {"meshServices": {"mode": mode}}
    return Resource("Mesh", Meta(name="default"), spec)


def dataplane(name: str, service: str, port: int = 8080) -> Resource:
    inbound = [{"port": port, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}]
    spec = {"networking": {"address": "127.0.0.1", "inbound": inbound}}
    return Resource("Dataplane", Meta(name=name, mesh="default"), spec)


def generator(name: str, template: str, **match: str) -> Resource:
    spec = {"selector": {"meshService": {"matchLabels": match}}, "template": template}
    return Resource("HostnameGenerator", Meta(name=name), spec)


def synced(name: str, zone: str, service: str) -> Resource:
    labels = {
        "kuma.io/origin": "global",
        "kuma.io/zone": zone,
        "kuma.io/display-name": service,
    }  # no kuma.io/env (a user's MeshService): a Universal zone's all the same
    spec = {
        "spec": {
            "selector": {"dataplaneTags": {"kuma.io/service": service}},
            "ports": [{"port": 8080, "targetPort": 8080, "appProtocol": "http", "name": "8080"}],
        }
    }
    return Resource("MeshService", Meta(name=name, mesh="default", labels=labels), spec)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


async def until(predicate: Any, what: str) -> Any:
    async def check() -> Any:
        return predicate()

    return await async_wait_until(check, timeout=5, what=what)


async def test_generated_with_a_stable_vip_and_hostnames_and_status(store: MemoryStore) -> None:
    await store.create(mesh("Everywhere"))
    await store.create(
        generator("local", "{{ .DisplayName }}.svc.mesh.local", **{"kuma.io/origin": "zone"})
    )
    await store.create(generator("clash", "backend.svc.mesh.local", **{"kuma.io/origin": "zone"}))
    await store.create(dataplane("dp-1", "backend"))
    await store.create(dataplane("dp-2", "web", 9090))
    services = ZoneServices(store, ZONE, CIDR)
    await services.start()
    try:

        def status() -> dict[str, Any] | None:
            found = [r for r, _ in services._mirror.entries("MeshService") if r.name == "web"]
            return found[0].spec.get("status") if found else None

        await until(lambda: (status() or {}).get("addresses"), "web's status with its hostname")
        ms = await store.get("MeshService", "default", "backend")
        assert ms.spec["spec"] == {
            "selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
            "ports": [{"name": "8080", "port": 8080, "targetPort": 8080, "appProtocol": "http"}],
        }
        assert ms.meta.labels["kuma.io/managed-by"] == "meshservice-generator"
        assert ms.meta.labels["kuma.io/origin"] == "zone"
        vip = services.snapshot.vips[vip_key(MESH_SERVICE, "default", "web")]
        st = status()
        assert st is not None
        assert st["vips"] == [{"ip": vip}]
        assert st["tls"] == {"status": "NotReady"}
        assert [a["hostname"] for a in st["addresses"]] == ["web.svc.mesh.local"]
        # `clash` names web `backend.svc.mesh.local`, which backend holds: one answer, and
        # the conflict in web's status
        names = services.snapshot.names.records
        assert names["web.svc.mesh.local"] == vip
        assert (
            names["backend.svc.mesh.local"]
            == services.snapshot.vips[vip_key(MESH_SERVICE, "default", "backend")]
        )
        refused = [
            c
            for g in st["hostnameGenerators"]
            if g["hostnameGeneratorRef"]["coreName"] == "clash"
            for c in g["conditions"]
        ]
        assert [c["reason"] for c in refused] == ["Conflict"]
        assert names["web.mesh"]  # the kuma.io/service names stay (mode Everywhere)
        target = next(t for t in services.snapshot.targets if t.name == "web")
        assert (target.vip, target.zone, target.services) == (vip, ZONE, frozenset({"web"}))
    finally:
        await services.stop()
    # a restart keeps the VIP; the service going away keeps it reserved, coming back reuses it
    services = ZoneServices(store, ZONE, CIDR)
    await services.start()
    try:
        key = vip_key(MESH_SERVICE, "default", "web")
        assert services.snapshot.vips[key] == vip
        await store.delete("Dataplane", "default", "dp-2")
        await until(lambda: key not in services.snapshot.vips, "web's MeshService removed")
        await store.create(dataplane("dp-3", "web", 9090))
        await until(lambda: services.snapshot.vips.get(key) == vip, "web's VIP back")
    finally:
        await services.stop()


async def test_disabled_generates_nothing_and_a_synced_copy_gets_a_zone_vip(
    store: MemoryStore,
) -> None:
    await store.create(mesh(None))
    await store.create(dataplane("dp-1", "backend"))
    await store.create(
        generator(
            "synced",
            "{{ .DisplayName }}.svc.{{ .Zone }}.mesh.local",
            **{"kuma.io/origin": "global", "kuma.io/env": "universal"},
        )
    )
    await store.create(synced("backend.0123456789", "zone-2", "backend"))
    services = ZoneServices(store, ZONE, CIDR)
    await services.start()
    try:
        key = vip_key(MESH_SERVICE, "default", "backend.0123456789")
        await until(lambda: key in services.snapshot.vips, "the copy's VIP")
        vip = services.snapshot.vips[key]
        assert services.snapshot.names.records["backend.svc.zone-2.mesh.local"] == vip
        assert (await store.list("MeshService")).items == [
            await store.get("MeshService", "default", "backend.0123456789")
        ]  # nothing generated in mode Disabled, and the copy's status is not written here
        target = services.snapshot.targets[0]
        assert (target.zone, target.display_name) == ("zone-2", "backend")
    finally:
        await services.stop()
