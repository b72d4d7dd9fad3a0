"""VIP allocation: stable, never duplicated, freed addresses reused last, state round-trips."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zone_cp.vip_allocator import VipAllocator, VipExhaustedError, service_key


def roundtrip(allocator: VipAllocator) -> VipAllocator:
    """Through JSON text, as zone-cp will persist it."""
    return VipAllocator.from_dict(json.loads(json.dumps(allocator.to_dict())))


def test_allocation_is_stable_and_skips_network_address() -> None:
    vips = VipAllocator("10.0.0.0/24")
    first = vips.allocate(service_key("default", "backend"))
    assert first == "10.0.0.1"
    assert vips.allocate(service_key("default", "backend")) == first
    assert vips.allocate(service_key("default", "web")) == "10.0.0.2"
    assert vips.allocate(service_key("default", "backend", "zone-2")) == "10.0.0.3"
    assert vips.get("default/web") == "10.0.0.2" and vips.get("nope") is None
    assert len(vips) == 3 and "default/web" in vips


def test_keys_separate_meshes_and_zones() -> None:
    assert len({service_key("a", "s"), service_key("b", "s"), service_key("a", "s", "z")}) == 3


def test_freed_addresses_are_not_reused_until_the_range_wraps() -> None:
    vips = VipAllocator("10.0.0.0/29")  # hosts .1 to .6
    ips = [vips.allocate(f"s{i}") for i in range(6)]
    assert ips == [f"10.0.0.{i}" for i in range(1, 7)]
    vips.release("s1")  # frees .2
    vips.release("s4")  # frees .5
    # The cursor is past the end, so it wraps and takes the first free address: .2
    assert vips.allocate("n1") == "10.0.0.2"
    assert vips.allocate("n2") == "10.0.0.5"
    vips.release("n1")
    vips.release("s5")  # frees .6, ahead of the cursor
    assert vips.allocate("n3") == "10.0.0.6"
    assert vips.allocate("n4") == "10.0.0.2"


def test_freed_address_waits_for_a_full_cycle() -> None:
    vips = VipAllocator("10.0.0.0/24")  # 254 hosts
    first = vips.allocate("old")
    vips.release("old")
    seen = [vips.allocate(f"new{i}") for i in range(253)]
    assert first not in seen
    assert vips.allocate("last") == first  # only once every other address is taken


def test_exhaustion_is_a_clear_error_never_a_duplicate() -> None:
    vips = VipAllocator("10.0.0.0/30")  # two hosts
    vips.allocate("a")
    vips.allocate("b")
    with pytest.raises(VipExhaustedError, match=r"no free VIP in 10\.0\.0\.0/30 for 'c'"):
        vips.allocate("c")
    assert vips.assignments() == {"a": "10.0.0.1", "b": "10.0.0.2"}
    vips.release("a")
    assert vips.allocate("c") == "10.0.0.1"


def test_bad_cidrs_are_rejected() -> None:
    for bad in ("10.0.0.0/31", "10.0.0.1/24", "fd00::/64", "nonsense"):
        with pytest.raises(ValueError):
            VipAllocator(bad)


def test_sync_frees_the_missing_and_allocates_new_keys_in_order() -> None:
    vips = VipAllocator("10.0.0.0/24")
    vips.sync(["b", "a"])
    assert vips.assignments() == {"a": "10.0.0.1", "b": "10.0.0.2"}
    assert vips.sync(["c", "a"]) == {"a": "10.0.0.1", "c": "10.0.0.3"}


def test_state_round_trips_exactly() -> None:
    vips = VipAllocator("10.9.0.0/16")
    for i in range(10):
        vips.allocate(f"s{i}")
    vips.release("s3")
    restored = roundtrip(vips)
    assert restored.to_dict() == vips.to_dict()
    assert restored.allocate("next") == vips.allocate("next")


def test_thousand_services_come_and_go_without_moving_existing_vips() -> None:
    vips = VipAllocator()
    existing = {service_key("default", f"keep-{i}"): "" for i in range(50)}
    for key in existing:
        existing[key] = vips.allocate(key)
    rng = random.Random(42)
    live: list[str] = []
    handed_out: list[str] = []
    for i in range(1000):
        key = service_key("default", f"churn-{i}")
        handed_out.append(vips.allocate(key))
        live.append(key)
        if rng.random() < 0.6:
            vips.release(live.pop(rng.randrange(len(live))))
        if i % 100 == 0:
            vips = roundtrip(vips)  # zone-cp restarts in between
            # Services added and removed around a restart keep their VIPs too.
            assert all(vips.get(k) is not None for k in live)
    vips = roundtrip(vips)
    assert {key: vips.get(key) for key in existing} == existing
    assignments = vips.assignments()
    assert len(set(assignments.values())) == len(assignments)
    # Nothing freed was handed out again: 1,050 allocations fit in the /16 without wrapping.
    assert len(set(handed_out)) == len(handed_out)
    assert not set(handed_out) & set(existing.values())


def test_from_dict_rejects_inconsistent_state() -> None:
    good = VipAllocator("10.0.0.0/24")
    good.allocate("a")
    state = good.to_dict()
    cases = [
        {**state, "version": 99},
        {**state, "assignments": {"a": "10.0.1.1"}},
        {**state, "assignments": {"a": "10.0.0.1", "b": "10.0.0.1"}},
        {**state, "assignments": {"a": "10.0.0.0"}},  # network address
        {**state, "assignments": {"a": "10.0.0.255"}},  # broadcast
        {**state, "assignments": ["a"]},
        {**state, "cursor": "10.0.1.0"},
        {**state, "cidr": "bogus"},
    ]
    for bad in cases:
        with pytest.raises(ValueError):
            VipAllocator.from_dict(bad)


def test_changed_cidr_keeps_addresses_that_still_fit() -> None:
    vips = VipAllocator("10.0.0.0/24")
    inside = vips.allocate("a")
    restored = VipAllocator.from_dict(vips.to_dict(), cidr="10.0.0.0/16")
    assert restored.get("a") == inside
    moved = VipAllocator.from_dict(vips.to_dict(), cidr="10.5.0.0/16")
    assert moved.get("a") is None and moved.allocate("a") == "10.5.0.1"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=200))
def test_no_two_keys_ever_share_an_address(ops: list[tuple[bool, int]]) -> None:
    vips = VipAllocator("10.0.0.0/28")  # 14 hosts: exhaustion happens
    for allocate, n in ops:
        key = f"k{n}"
        if allocate:
            try:
                vips.allocate(key)
            except VipExhaustedError:
                assert len(vips) == vips.capacity
        else:
            vips.release(key)
        values = list(vips.assignments().values())
        assert len(values) == len(set(values))
        assert all(ipaddress.IPv4Address(v) in vips.network for v in values)
    assert roundtrip(vips).assignments() == vips.assignments()
