"""WantsIndex, how the config pusher finds the proxies a catalog change concerns without asking
each one (issue 19): on random sets of proxies (sidecars calling some services or their whole
mesh, ingresses), random re-registrations and departures, and random changed services, it
finds exactly the proxies whose `Wants.affected_by` says so, so exactly the affected sidecars'
configs are rebuilt."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.dpconfig.protocol import ProxyType
from zone_cp.dpbuild import Wants
from zone_cp.dppusher import WantsIndex

MESHES = st.sampled_from(["default", "other"])
SERVICES = st.sampled_from(["a", "b", "c", "d"])
KEYS = st.tuples(st.just("Dataplane"), MESHES, st.sampled_from(["p", "q", "r", "s"]))
WANTS = st.one_of(
    st.builds(Wants, st.just(ProxyType.INGRESS), st.just(""), st.none()),
    st.builds(
        Wants,
        st.just(ProxyType.SIDECAR),
        MESHES,
        st.one_of(st.none(), st.frozensets(SERVICES, max_size=3)),
    ),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, WANTS),
        st.tuples(st.just("drop"), KEYS),
        st.tuples(st.just("changed"), st.frozensets(st.tuples(MESHES, SERVICES), max_size=4)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_the_index_finds_exactly_the_affected_proxies(steps: list[Any]) -> None:
    index = WantsIndex()
    held: dict[tuple[str, str, str], Wants] = {}
    for step in steps:
        if step[0] == "put":
            index.put(step[1], step[2])
            held[step[1]] = step[2]
        elif step[0] == "drop":
            index.discard(step[1])
            held.pop(step[1], None)
        else:
            changed = step[1]
            expected = {k for k, w in held.items() if w.affected_by(changed)}
            assert index.affected(changed) == expected
        assert len(index) == len(held)
