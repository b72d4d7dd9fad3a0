"""CatalogIndex, the catalog kept one resource at a time (issue 19): on random sequences of
Dataplane and ZoneIngress puts and removals it equals a full `build_catalog` and
`available_services`, and the services it reports changed are exactly those a full diff of
the two catalogs finds (what decides which sidecars' configs are rebuilt)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.dpconfig.catalog import (
    SERVICE_PORT_TAG,
    Catalog,
    CatalogIndex,
    available_services,
    build_catalog,
)
from meshfed.resources.model import Resource
from tests.unit.policy.factories import dataplane, inbound, zone_ingress
from zone_cp.dpbuild import changed_services

ZONE = "zone-1"
NAMES = st.sampled_from([f"dp-{i}" for i in range(6)])
SERVICES = st.sampled_from(["a", "b", "c"])
MESHES = st.sampled_from(["default", "other"])


@st.composite
def inbounds(draw: st.DrawFn) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    tags: dict[str, str] = {}
    if draw(st.booleans()):
        extra["servicePort"] = draw(st.sampled_from([8080, 9090]))
    if draw(st.booleans()):
        tags["kuma.io/protocol"] = draw(st.sampled_from(["http", "tcp"]))
    if draw(st.booleans()):
        tags["version"] = draw(st.sampled_from(["v1", "v2"]))
    if draw(st.integers(0, 4)) == 0:
        extra["health"] = {"ready": False}
    if draw(st.integers(0, 4)) == 0:
        extra["address"] = "127.0.0.99"
    return inbound(draw(SERVICES), draw(st.sampled_from([18080, 18081])), tags=tags, **extra)


@st.composite
def dataplanes(draw: st.DrawFn) -> Resource:
    return dataplane(
        draw(NAMES),
        *draw(st.lists(inbounds(), min_size=1, max_size=3)),
        address=draw(st.sampled_from(["127.0.0.1", "127.0.0.2"])),
        mesh=draw(MESHES),
    )


@st.composite
def ingresses(draw: st.DrawFn) -> Resource:
    offered = []
    for _ in range(draw(st.integers(0, 3))):
        tags = {"kuma.io/service": draw(SERVICES)}
        if draw(st.booleans()):
            tags[SERVICE_PORT_TAG] = draw(st.sampled_from(["8080", "9090", "x"]))
        if draw(st.booleans()):
            tags["kuma.io/protocol"] = draw(st.sampled_from(["http", "tcp"]))
        offered.append({"tags": tags, "instances": draw(st.integers(0, 3)), "mesh": draw(MESHES)})
    return zone_ingress(
        draw(st.sampled_from(["ing-0", "ing-1", "ing-2"])),
        draw(st.sampled_from([ZONE, "zone-2", "zone-3"])),
        draw(st.sampled_from(["127.0.1.1", "127.0.1.2"])),
        10001,
        offered,
    )


# One step: put a resource, or remove one by (type, mesh, name).
STEPS = st.lists(
    st.one_of(
        dataplanes(),
        ingresses(),
        st.tuples(st.just("Dataplane"), MESHES, NAMES),
        st.tuples(st.just("ZoneIngress"), st.just(""), st.sampled_from(["ing-0", "ing-1"])),
    ),
    max_size=25,
)


def online(res: Resource) -> bool:
    return res.meta.name not in ("dp-5", "ing-2")


def entries(catalog: Catalog) -> list[Any]:
    return list(catalog)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_the_index_equals_a_full_build_after_every_step(steps: list[Any]) -> None:
    index = CatalogIndex(ZONE, online=online, ingress_online=online)
    held: dict[tuple[str, str, str], Resource] = {}
    before = build_catalog(ZONE, [], [])
    for step in steps:
        if isinstance(step, Resource):
            index.put(step)
            held[(step.type, step.meta.mesh, step.meta.name)] = step
        else:
            index.remove(*step)
            held.pop(step, None)
        dps = [r for r in held.values() if r.type == "Dataplane"]
        ings = [r for r in held.values() if r.type == "ZoneIngress"]
        full = build_catalog(ZONE, dps, ings, online=online, ingress_online=online)
        assert index.take_changed() == changed_services(before, {}, full, {})
        assert entries(index.catalog()) == entries(full)
        assert index.available() == available_services(dps, ZONE, online)
        before = full
