"""ZoneCatalog, what zone_cp.services applies store changes to one at a time (issue 19): on
random sequences of Dataplane and ZoneIngress changes (relayed or own, in meshes that exist or
not) and mesh-set changes, its catalog, its own ingresses' advertisement and the VIPs a book
synced only when its VIP keys change equal a full rebuild after every step."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, ORIGIN_GLOBAL, Resource
from tests.unit.dpconfig.test_catalog_index import dataplanes, ingresses
from zone_cp.catalog import ZoneCatalog, own_available_services, zone_catalog
from zone_cp.vipbook import VipBook

ZONE = "zone-1"
CIDR = "240.0.0.0/24"


@st.composite
def zone_ingresses(draw: st.DrawFn) -> Resource:
    """Relayed copies (some without `zone`, which the global's label then gives) and own ones."""
    res = draw(ingresses())
    if draw(st.booleans()):
        res.meta.labels[LABEL_ORIGIN] = ORIGIN_GLOBAL
        res.meta.labels[LABEL_ZONE] = res.spec["zone"]
        if draw(st.booleans()):
            del res.spec["zone"]
    return res


STEPS = st.lists(
    st.one_of(
        dataplanes(),
        zone_ingresses(),
        st.tuples(st.just("Dataplane"), st.sampled_from(["default", "other"]), st.just("dp-1")),
        st.tuples(st.just("ZoneIngress"), st.just(""), st.just("ing-1")),
        st.frozensets(st.sampled_from(["default", "other"])),  # the meshes that exist now
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_incremental_zone_catalog_equals_a_full_pass(steps: list[Any]) -> None:
    meshes: frozenset[str] = frozenset({"default"})
    held: dict[tuple[str, str, str], Resource] = {}
    state = ZoneCatalog(ZONE)
    state.reset(meshes, [], [])
    book, full_book = VipBook(CIDR), VipBook(CIDR)
    for step in steps:
        if isinstance(step, frozenset):
            meshes = step
            state.reset(  # as a full pass reads them
                meshes,
                [r for r in held.values() if r.type == "Dataplane"],
                [r for r in held.values() if r.type == "ZoneIngress"],
            )
        elif isinstance(step, Resource):
            held[(step.type, step.meta.mesh, step.meta.name)] = step
            state.put(step.type, step.meta.mesh, step.meta.name, step)
        else:
            held.pop(step, None)
            state.put(*step, None)
        dps = [r for r in held.values() if r.type == "Dataplane"]
        ings = [r for r in held.values() if r.type == "ZoneIngress"]
        full = zone_catalog(ZONE, meshes, dps, ings)
        state.take_changed()
        assert list(state.catalog()) == list(full)
        assert state.available() == own_available_services(ZONE, meshes, dps)
        wanted = state.take_vip_keys()
        if wanted is not None:
            book.sync(wanted, meshes, "t")
        full_book.sync(full.vip_keys(), meshes, "t")
        assert book.active() == full_book.active()
        assert book.reserved() == full_book.reserved()
