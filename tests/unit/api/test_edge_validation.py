"""The zone API refuses bad labels, names, Dataplane addresses and service names with a 400 in
Kuma's error format naming the field, and stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.resources.descriptors import Mode
from meshfed.resources.model import Meta, Resource
from tests.unit.api.conftest import Api, fields, start_api
from tests.unit.api.test_resources_api import rejected

DP = "/meshes/default/dataplanes"
SVC_FIELD = "networking.inbound[0].tags['kuma.io/service']"


@pytest.fixture
async def zone_api() -> AsyncIterator[Api]:
    api, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        # In a zone the Mesh is global-owned: seed it as KDS would, through the store.
        await api.store.create(Resource(type="Mesh", meta=Meta(name="default")))
        yield api
    finally:
        await client.close()
        await api.store.close()


def dataplane(name: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": over.pop("address", "127.0.0.1"),
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": over.pop("service", "web")}}],
        },
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (dataplane("dp", labels={"team": "a\nb\u0000"}), "labels['team']"),
        (dataplane("dp", labels={"team": "bad value!"}), "labels['team']"),
        (dataplane("dp", labels={"bad key!": "v"}), "labels['bad key!']"),
        (dataplane("dp", address="0.0.0.0"), "networking.address"),
        (dataplane("dp", address="::"), "networking.address"),
        (dataplane("dp", address="239.1.1.1"), "networking.address"),
        (dataplane("dp", service="s" * 300), SVC_FIELD),
    ],
)
async def test_bad_dataplanes_are_refused_naming_the_field(
    zone_api: Api, doc: dict[str, Any], field: str
) -> None:
    body = await rejected(zone_api, "PUT", f"{DP}/dp", 400, json=doc)
    assert field in fields(body)


async def test_a_name_kuma_refuses_is_refused(zone_api: Api) -> None:
    body = await rejected(zone_api, "PUT", f"{DP}/a..b", 400, json=dataplane("a..b"))
    assert fields(body) == ["name"]


async def test_a_long_valid_service_is_stored(zone_api: Api) -> None:
    service = "_".join(["s" * 60] * 4)
    resp = await zone_api.put(f"{DP}/long", dataplane("long", service=service))
    assert resp.status == 201, await resp.json()


@pytest.mark.parametrize(
    ("fields_set", "field"),
    [
        ({"skipCreatingInitialPolicies": ["*"]}, "skipCreatingInitialPolicies"),
        ({"routing": {"localityAwareLoadBalancing": True}}, "routing.localityAwareLoadBalancing"),
        (
            {"constraints": {"dataplaneProxy": {"requirements": [{"tags": {"a": "b"}}]}}},
            "constraints.dataplaneProxy",
        ),
    ],
)
async def test_mesh_fields_nothing_acts_on_are_refused(
    api: Api, fields_set: dict[str, Any], field: str
) -> None:
    body = await rejected(
        api, "PUT", "/meshes/m", 400, json={"type": "Mesh", "name": "m", **fields_set}
    )
    [problem] = body["invalid_parameters"]
    assert problem["field"] == field
    assert problem["reason"].startswith("is not enforced by meshfed: ")


async def test_a_mesh_without_them_is_accepted(api: Api) -> None:
    doc = {"type": "Mesh", "name": "m", "routing": {"zoneEgress": False}}
    assert (await api.put("/meshes/m", doc)).status == 201
