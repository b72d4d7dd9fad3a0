"""`/global-insight` and `/meshes/{mesh}/dataplanes+insights`: the counting alone, then the
routes on an in-process API (who may call them, and each refusal)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from yarl import URL

from meshfed.api.insights import (
    GLOBAL_INSIGHT_SCHEMA,
    OVERVIEW_PAGE_SCHEMA,
    Inventory,
    dataplane_state,
    global_insight,
    service_states,
)
from meshfed.resources.descriptors import TypeDescriptor
from meshfed.resources.model import Key, Meta, Resource
from tests.unit.api.conftest import Api, assert_std_error, mesh, start_api, timeout

OPEN = [{"id": "1", "connectTime": "2026-01-01T00:00:00Z"}]
CLOSED = [{**OPEN[0], "disconnectTime": "2026-01-01T00:01:00Z"}]


def dp(name: str, mesh_name: str = "default", *inbounds: tuple[str, bool | None]) -> Resource:
    listed = []
    for i, (service, ready) in enumerate(inbounds):
        inbound: dict[str, Any] = {"port": 8080 + i, "tags": {"kuma.io/service": service}}
        if ready is not None:
            inbound["health"] = {"ready": ready}
        listed.append(inbound)
    spec = {"networking": {"address": "127.0.0.1", "inbound": listed}}
    return Resource("Dataplane", Meta(name=name, mesh=mesh_name), spec)


def insight(name: str, subs: list[dict[str, Any]], mesh_name: str = "default") -> Resource:
    return Resource("DataplaneInsight", Meta(name=name, mesh=mesh_name), {"subscriptions": subs})


def test_a_proxy_is_online_while_its_newest_subscription_is_open() -> None:
    web = dp("web", "default", ("web", True))
    assert dataplane_state(web, insight("web", OPEN)) == "online"
    assert dataplane_state(web, insight("web", [*OPEN, *CLOSED])) == "offline"
    assert dataplane_state(web, None) == "offline"  # no proxy ever connected
    half = dp("two", "default", ("a", True), ("b", False))
    assert dataplane_state(half, insight("two", OPEN)) == "partiallyDegraded"


def test_a_service_is_as_ready_as_its_instances() -> None:
    states = service_states(
        [
            dp("a1", "default", ("a", True)),
            dp("a2", "default", ("a", None)),  # no health: ready (decision 28)
            dp("b1", "default", ("b", True)),
            dp("b2", "default", ("b", False)),
            dp("c1", "other", ("c", False)),
        ]
    )
    assert states == {
        ("default", "a"): "online",
        ("default", "b"): "partiallyDegraded",
        ("other", "c"): "offline",
    }


def test_global_insight_counts_zones_meshes_dataplanes_services_and_policies() -> None:
    dps = [
        dp("web", "default", ("web", True)),
        dp("db", "default", ("db", True)),
        dp("api", "other", ("api", True)),
    ]
    inv = Inventory(
        zone_states=["online", "offline", "online"],
        meshes=[
            Resource("Mesh", Meta(name="default"), {"mtls": {"enabledBackend": "ca-1"}}),
            Resource("Mesh", Meta(name="other"), {}),
        ],
        dataplanes=dps,
        dataplane_insights={Key("default", "web"): insight("web", OPEN)},
        ingresses=[Resource("ZoneIngress", Meta(name="in-1"), {})],
        ingress_insights={
            Key("", "in-1"): Resource(
                "ZoneIngressInsight", Meta(name="in-1"), {"subscriptions": OPEN}
            )
        },
        totals={"Mesh": 2, "Dataplane": 3, "MeshTimeout": 3},
        policies={"default": {"MeshTimeout": 2}, "other": {"MeshTimeout": 1}},
    )
    got = global_insight(inv, "2026-01-01T00:00:00Z")
    jsonschema_rs.validate(GLOBAL_INSIGHT_SCHEMA, got)
    assert got["zones"]["controlPlanes"] == {"online": 2, "offline": 1, "total": 3}
    assert got["zones"]["zoneIngresses"] == {"online": 1, "total": 1}
    assert got["dataplanes"]["standard"] == {
        "online": 1,
        "offline": 2,
        "partiallyDegraded": 0,
        "total": 3,
    }
    assert got["services"]["total"] == 3
    assert got["policies"] == {"total": 3}
    assert got["resources"]["Dataplane"] == {"total": 3}
    default = got["meshes"]["byMesh"]["default"]
    assert default["mtls"] == "ca-1"
    assert default["dataplanes"]["online"] == 1 and default["dataplanes"]["total"] == 2
    assert default["policies"] == {"total": 2, "byType": {"MeshTimeout": 2}}
    assert got["meshes"]["byMesh"]["other"]["mtls"] is None


class Zones:
    """The global's FederationView as far as `/global-insight` reads it: each zone's state."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    async def zone_overview(self, zone: Resource) -> dict[str, Any]:
        return {"name": zone.meta.name, "zoneInsight": {"state": self.states[zone.meta.name]}}

    async def sync_status(self, desc: TypeDescriptor, res: Resource) -> dict[str, Any]:
        raise AssertionError("not used")


async def test_global_insight_route_reads_the_store_and_the_zone_states() -> None:
    api, client = await start_api(federation=Zones({"zone-1": "online", "zone-2": "offline"}))
    try:
        for zone in ("zone-1", "zone-2"):
            assert (await api.put(f"/zones/{zone}", {"type": "Zone", "name": zone})).ok
        assert (await api.put("/meshes/default", mesh("default"))).ok
        assert (await api.put("/meshes/default/meshtimeouts/t1", timeout("t1"))).ok
        status, body = await api.json("GET", "/global-insight")
        assert status == 200, body
        jsonschema_rs.validate(GLOBAL_INSIGHT_SCHEMA, body)
        assert body["zones"]["controlPlanes"] == {"online": 1, "offline": 1, "total": 2}
        assert body["meshes"]["byMesh"]["default"]["policies"]["byType"] == {"MeshTimeout": 1}
        assert body["resources"]["Zone"] == {"total": 2}
        # Public, as every read (decision 39); an invalid token is refused all the same.
        resp = await client.get("/global-insight", headers={"Authorization": "Bearer nope"})
        assert resp.status == 401
        assert_std_error(await resp.json(), 401)
        resp = await client.post("/global-insight")
        assert resp.status == 405
    finally:
        await client.close()
        await api.store.close()


async def test_global_insight_is_on_the_global_only(api: Api) -> None:
    status, _ = await api.json("GET", "/global-insight")
    assert status == 404  # no federation view: a zone, or a global without KDS
    _, doc = await api.json("GET", "/openapi.json")
    assert "/global-insight" not in doc["paths"]
    op = doc["paths"]["/meshes/{mesh}/dataplanes+insights"]["get"]
    assert op["x-meshfed-access"] == "public"


async def test_dataplanes_insights_joins_each_dataplane_with_its_insight(api: Api) -> None:
    assert (await api.put("/meshes/default", mesh("default"))).ok
    for name in ("web", "db"):
        await api.store.create(dp(name, "default", (name, True)))
    await api.store.create(insight("web", OPEN))
    status, body = await api.json("GET", "/meshes/default/dataplanes+insights?size=1")
    assert status == 200, body
    jsonschema_rs.validate(OVERVIEW_PAGE_SCHEMA, body)
    assert body["total"] == 2 and [i["name"] for i in body["items"]] == ["db"]
    assert body["items"][0]["dataplaneInsight"] == {}
    assert body["next"]
    resp = await api.client.get(URL(body["next"]).path_qs)
    page = await resp.json()
    assert page["items"][0]["name"] == "web"
    assert page["items"][0]["dataplaneInsight"]["subscriptions"] == OPEN
    assert page["items"][0]["dataplane"]["networking"]["address"] == "127.0.0.1"


async def test_dataplanes_insights_refusals(api: Api) -> None:
    status, body = await api.json("GET", "/meshes/nope/dataplanes+insights")
    assert status == 404
    assert_std_error(body, 404)
    status, body = await api.json("GET", "/meshes/default/dataplanes+insights?size=0")
    assert status == 400
    assert_std_error(body, 400)
    resp = await api.client.get(
        "/meshes/default/dataplanes+insights", headers={"Authorization": "Bearer nope"}
    )
    assert resp.status == 401
