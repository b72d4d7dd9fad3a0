"""The services route and the API hooks it comes with (extra `/metrics` collectors, extra
`GET /` fields), on an in-process API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshfed.api.services import global_services
from meshfed.resources.descriptors import Mode
from meshfed.resources.model import Meta, Resource
from tests.unit.api.conftest import start_api


class OneGauge(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("meshfed_test_gauge", "A test gauge", value=42)


async def test_zone_route_hooks_and_404_for_an_unknown_mesh() -> None:
    seen: list[str] = []

    async def view(mesh: str) -> dict[str, Any]:
        seen.append(mesh)
        return {"mesh": mesh, "total": 0, "items": [], "next": None}

    api, client = await start_api(
        Mode.ZONE,
        zone="zone-1",
        services=view,
        collectors=[OneGauge()],
        info={"dns": "127.0.0.1:7653"},
    )
    try:
        await api.store.create(Resource("Mesh", Meta(name="default")))
        status, body = await api.json("GET", "/meshes/default/services")
        assert status == 200 and body["mesh"] == "default" and seen == ["default"]
        status, body = await api.json("GET", "/meshes/nope/services")
        assert status == 404 and "nope" in body["detail"] and seen == ["default"]
        status, body = await api.json("GET", "/")
        assert body["dns"] == "127.0.0.1:7653" and body["zone"] == "zone-1"
        metrics = await (await client.get("/metrics")).text()
        assert "meshfed_test_gauge 42.0" in metrics
        status, doc = await api.json("GET", "/openapi.json")
        assert "/meshes/{mesh}/services" in doc["paths"]
    finally:
        await client.close()


async def test_global_route_answers_from_the_store() -> None:
    stores: list[Any] = []

    async def view(mesh: str) -> dict[str, Any]:
        return await global_services(stores[0], mesh)

    api, client = await start_api(services=view)
    stores.append(api.store)
    zone_2 = {"kuma.io/origin": "zone", "kuma.io/zone": "zone-2"}
    try:
        await api.store.create(Resource("Mesh", Meta(name="default")))
        inbound = [{"port": 8080, "tags": {"kuma.io/service": "backend"}}]
        await api.store.create(
            Resource(
                "Dataplane",
                Meta(name="dp.abc", mesh="default", labels=zone_2),
                {"networking": {"address": "127.0.0.1", "inbound": inbound}},
            )
        )
        await api.store.create(
            Resource(
                "VirtualIPs",
                Meta(name="zone-2.def", mesh="default", labels=zone_2),
                {"cidr": "127.2.0.0/16", "services": {"backend": {"vip": "127.2.0.1"}}},
            )
        )
        status, body = await api.json("GET", "/meshes/default/services")
        assert status == 200
        assert body["items"] == [
            {
                "service": "backend",
                "instances": 1,
                "zones": [{"zone": "zone-2", "instances": 1}],
                "vips": {"zone-2": "127.2.0.1"},
            }
        ]
    finally:
        await client.close()


async def test_without_a_view_there_is_no_route() -> None:
    api, client = await start_api()
    try:
        status, body = await api.json("GET", "/meshes/default/services")
        assert status == 404 and "no such path" in body["detail"]
    finally:
        await client.close()
