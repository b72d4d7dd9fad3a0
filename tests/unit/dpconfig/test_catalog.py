"""The zone catalog: local healthy inbounds, other zones' ingresses, availableServices."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.catalog import (
    SERVICE_PORT_TAG,
    LocalInstance,
    RemoteIngress,
    VipKey,
    available_services,
    build_catalog,
)
from meshfed.resources.model import Resource
from tests.unit.policy.factories import dataplane, inbound, zone_ingress

ZONE = "zone-1"

BACKEND_1 = dataplane(
    "backend-1",
    inbound("backend", 18080, servicePort=8080, tags={"version": "v1"}),
    address="127.0.0.11",
)
BACKEND_2 = dataplane(
    "backend-2",
    inbound("backend", 18080, servicePort=8080, tags={"version": "v1"}),
    # Its own inbound address overrides the dataplane's.
    inbound("backend", 18081, address="127.0.0.99", tags={"version": "v2"}),
    address="127.0.0.12",
)
SICK = dataplane(
    "backend-sick", inbound("backend", 18080, health={"ready": False}), address="127.0.0.13"
)
OFFLINE = dataplane("backend-offline", inbound("backend", 18080), address="127.0.0.14")
WEB = dataplane("web-1", inbound("web", 18000, servicePort=3000), address="127.0.0.15")
OTHER_MESH = dataplane("pay-1", inbound("backend", 18080), address="127.0.0.16", mesh="payments")
DATAPLANES = [BACKEND_1, BACKEND_2, SICK, OFFLINE, WEB, OTHER_MESH]


def online(dp: Resource) -> bool:
    return dp.meta.name != "backend-offline"


def advertised(
    service: str, instances: int, port: int | None = 8080, mesh: str = "default"
) -> dict[str, Any]:
    tags = {"kuma.io/service": service}
    if port is not None:
        tags[SERVICE_PORT_TAG] = str(port)
    return {"tags": tags, "instances": instances, "mesh": mesh}


INGRESSES = [
    # Our own ingress (its copy from the global carries our zone): never an endpoint.
    zone_ingress("own", ZONE, "127.0.0.20", 10001, [advertised("backend", 3)]),
    zone_ingress(
        "z2",
        "zone-2",
        "127.0.0.21",
        10001,
        [
            advertised("backend", 2),
            {**advertised("backend", 1), "tags": {"kuma.io/service": "backend", "version": "v2"}},
            advertised("remote-only", 4, port=7000),
            advertised("no-one", 0),
            {**advertised("external", 1), "externalService": True},
        ],
    ),
    zone_ingress(
        "z3",
        "zone-3",
        "10.0.0.3",
        10001,
        [advertised("backend", 3, port=9090), advertised("remote-only", 1, port=None)],
        advertised=("203.0.113.3", 443),
    ),
    zone_ingress("z4-down", "zone-4", "127.0.0.24", 10001, [advertised("backend", 9)]),
]


def ingress_online(zi: Resource) -> bool:
    return zi.meta.name != "z4-down"


CATALOG = build_catalog(ZONE, DATAPLANES, INGRESSES, online=online, ingress_online=ingress_online)


def test_local_instances_are_the_healthy_inbounds_of_online_dataplanes() -> None:
    entry = CATALOG.get("default", "backend")
    assert entry is not None
    assert [(i.dataplane, i.address, i.port, i.service_port) for i in entry.local] == [
        ("backend-1", "127.0.0.11", 18080, 8080),
        ("backend-2", "127.0.0.12", 18080, 8080),
        ("backend-2", "127.0.0.99", 18081, 18081),  # servicePort defaults to port
    ]
    first = entry.local[0]
    assert first == LocalInstance(
        "backend-1",
        0,
        "127.0.0.11",
        18080,
        "127.0.0.1",
        8080,
        {"kuma.io/service": "backend", "version": "v1", "kuma.io/zone": ZONE},
    )


def test_remote_zones_are_their_ingresses_weighted_by_instances() -> None:
    entry = CATALOG.get("default", "backend")
    assert entry is not None
    assert entry.remote == (
        RemoteIngress("zone-2", "z2", "127.0.0.21", 10001, 3),
        # Dialled on the advertised address and port.
        RemoteIngress("zone-3", "z3", "203.0.113.3", 443, 3),
    )
    assert entry.zones(ZONE) == [ZONE, "zone-2", "zone-3"]


def test_service_port_is_the_most_common_application_port() -> None:
    backend = CATALOG.get("default", "backend")
    remote_only = CATALOG.get("default", "remote-only")
    web = CATALOG.get("default", "web")
    assert backend is not None and remote_only is not None and web is not None
    # Counted over every zone, so that all zones agree: 8080 has two local instances and two
    # in zone-2 (its third advertises no port), 9090 three in zone-3, 18081 one.
    assert backend.port == 8080
    assert remote_only.port == 7000 and remote_only.local == ()
    assert remote_only.zones(ZONE) == ["zone-2", "zone-3"]
    assert web.port == 3000


def test_tie_on_ports_takes_the_lowest_and_unknown_is_none() -> None:
    a = dataplane("a", inbound("svc", 1000, servicePort=9000), address="127.0.0.1")
    b = dataplane("b", inbound("svc", 1000, servicePort=8000), address="127.0.0.2")
    catalog = build_catalog(
        ZONE,
        [a, b],
        [zone_ingress("z", "zone-2", "127.0.0.3", 1, [advertised("old", 1, port=None)])],
    )
    assert catalog.get("default", "svc").port == 8000  # type: ignore[union-attr]
    assert catalog.get("default", "old").port is None  # type: ignore[union-attr]


def test_what_is_left_out() -> None:
    assert CATALOG.get("default", "no-one") is None
    assert CATALOG.get("default", "external") is None
    payments = CATALOG.get("payments", "backend")
    assert payments is not None and payments.remote == ()
    assert [e.service for e in CATALOG.services("default")] == ["backend", "remote-only", "web"]
    assert len(CATALOG) == 4


def test_vip_keys_cover_services_and_zone_pinned_names() -> None:
    assert CATALOG.vip_keys() == [
        VipKey("default", "backend"),
        VipKey("default", "backend", ZONE),
        VipKey("default", "backend", "zone-2"),
        VipKey("default", "backend", "zone-3"),
        VipKey("default", "remote-only"),
        VipKey("default", "remote-only", "zone-2"),
        VipKey("default", "remote-only", "zone-3"),
        VipKey("default", "web"),
        VipKey("default", "web", ZONE),
        VipKey("payments", "backend"),
        VipKey("payments", "backend", ZONE),
    ]


def test_available_services_group_by_mesh_and_tags() -> None:
    assert available_services(DATAPLANES, ZONE, online) == [
        {
            "tags": {
                "kuma.io/service": "backend",
                "kuma.io/zone": ZONE,
                SERVICE_PORT_TAG: "18081",
                "version": "v2",
            },
            "instances": 1,
            "mesh": "default",
        },
        {
            "tags": {
                "kuma.io/service": "backend",
                "kuma.io/zone": ZONE,
                SERVICE_PORT_TAG: "8080",
                "version": "v1",
            },
            "instances": 2,
            "mesh": "default",
        },
        {
            "tags": {"kuma.io/service": "web", "kuma.io/zone": ZONE, SERVICE_PORT_TAG: "3000"},
            "instances": 1,
            "mesh": "default",
        },
        {
            "tags": {"kuma.io/service": "backend", "kuma.io/zone": ZONE, SERVICE_PORT_TAG: "18080"},
            "instances": 1,
            "mesh": "payments",
        },
    ]


def test_available_services_feed_other_zones_catalogs() -> None:
    # What zone-1 advertises is a valid ZoneIngress and reads back as the same services.
    ours = zone_ingress(
        "zone-1-ingress", ZONE, "127.0.0.20", 10001, available_services(DATAPLANES, ZONE, online)
    )
    theirs = build_catalog("zone-2", [], [ours])
    backend = theirs.get("default", "backend")
    assert backend is not None
    assert backend.remote == (RemoteIngress(ZONE, "zone-1-ingress", "127.0.0.20", 10001, 3),)
    assert backend.port == 8080
    web = theirs.get("default", "web")
    assert web is not None and web.port == 3000


def test_malformed_resources_are_skipped_not_fatal() -> None:
    broken = dataplane("broken", inbound("x", 1000), address="127.0.0.1")
    broken.spec = {"networking": {"inbound": [None, {"tags": {}}, {"port": "x", "tags": {}}]}}
    no_address = dataplane("no-address", inbound("y", 1000), address="127.0.0.1")
    no_address.spec["networking"].pop("address")
    odd_ingress = zone_ingress("odd", "zone-9", "127.0.0.1", 1, [advertised("z", 1)])
    odd_ingress.spec["availableServices"] = [None, {"mesh": 1}, {"tags": {}, "mesh": "default"}]
    catalog = build_catalog(ZONE, [broken, no_address], [odd_ingress])
    assert len(catalog) == 0
    assert available_services([broken, no_address], ZONE) == []


def test_a_stored_body_that_does_not_fit_its_model_offers_nothing() -> None:
    # Stored bodies are validated where they enter; one an older version wrote in another
    # shape is read as nothing, not half of it.
    odd = dataplane("odd", inbound("odd", 18080), address="127.0.0.30")
    odd.spec["networking"]["inbound"].append({"port": "18081", "tags": {"kuma.io/service": "x"}})
    catalog = build_catalog(ZONE, [odd, WEB], [])
    assert [e.service for e in catalog] == ["web"]
