"""The VIP book: services keep their VIP while present and get it back when they return;
reserved addresses go to others only when the range is full; no address is ever held twice;
the persisted form (VirtualIPs specs) restores the same book."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.dpconfig.catalog import VipKey
from meshfed.resources.types.vips import VIRTUAL_IPS
from zone_cp.vipbook import VipBook

BACKEND = VipKey("default", "backend")
BACKEND_Z2 = VipKey("default", "backend", "zone-2")
WEB = VipKey("default", "web")
OTHER = VipKey("other", "backend")


def keys(*names: str, mesh: str = "default") -> list[VipKey]:
    return [VipKey(mesh, n) for n in names]


def roundtrip(book: VipBook, cidr: str | None = None) -> VipBook:
    """Through JSON text, as the store keeps it; specs in the order they were written."""
    specs = json.loads(json.dumps(book.to_specs()))
    restored, problems = VipBook.from_specs(list(specs.items()), cidr or str(book.network))
    assert problems == []
    return restored


def assert_unique(book: VipBook) -> None:
    held = list(book.active().values()) + [vip for _, vip, _ in book.reserved()]
    assert len(held) == len(set(held)), held


def test_keys_keep_their_vip_and_new_ones_are_allocated_in_sorted_order() -> None:
    book = VipBook("127.1.0.0/16")
    result = book.sync([WEB, BACKEND_Z2, BACKEND])
    assert result.allocated == [BACKEND, BACKEND_Z2, WEB]
    assert book.active() == {BACKEND: "127.1.0.1", BACKEND_Z2: "127.1.0.2", WEB: "127.1.0.3"}
    assert not book.sync([BACKEND, WEB, BACKEND_Z2]).changed
    assert book.vip(BACKEND) == "127.1.0.1" and book.vip(VipKey("default", "nope")) is None


def test_a_service_that_goes_away_gets_its_vip_back_and_nobody_else_takes_it() -> None:
    book = VipBook("127.1.0.0/16")
    book.sync([BACKEND, WEB])
    result = book.sync([WEB], now="t1")
    assert result.reserved == [BACKEND] and book.vip(BACKEND) is None
    assert book.reserved() == [(BACKEND, "127.1.0.1", "t1")]
    book.sync([WEB, *keys(*(f"svc-{i}" for i in range(50)))])  # new ones: fresh addresses
    assert "127.1.0.1" not in book.active().values()
    result = book.sync([BACKEND, WEB])
    assert result.revived == [BACKEND] and book.vip(BACKEND) == "127.1.0.1"
    assert_unique(book)


def test_full_range_takes_the_oldest_reserved_address_first() -> None:
    book = VipBook("10.0.0.0/29")  # 6 addresses
    book.sync(keys("a", "b", "c", "d", "e", "f"))
    book.sync(keys("c", "d", "e", "f"), now="1")  # a, b reserved (a first)
    book.sync(keys("d", "e", "f"), now="2")  # c reserved last
    result = book.sync(keys("d", "e", "f", "g"))
    assert result.released == keys("a") and book.vip(VipKey("default", "g")) == "10.0.0.1"
    assert [k.service for k, _, _ in book.reserved()] == ["b", "c"]
    assert not book.unallocated and book.allocation_failures == 0
    assert_unique(book)


def test_exhaustion_leaves_keys_without_vip_counts_them_and_never_duplicates() -> None:
    book = VipBook("10.0.0.0/30")  # 2 addresses
    result = book.sync(keys("a", "b", "c", "d"))
    assert result.unallocated == keys("c", "d") and book.unallocated == keys("c", "d")
    assert book.allocation_failures == 2
    assert set(book.active().values()) == {"10.0.0.1", "10.0.0.2"}
    # Freed room (a left, with its address reserved) is not enough: c takes it only by
    # releasing a's reservation, since nothing else is free.
    result = book.sync(keys("b", "c"))
    assert book.vip(VipKey("default", "c")) == "10.0.0.1" and result.released == keys("a")
    assert book.unallocated == []
    assert_unique(book)


def test_reservations_beyond_the_limit_are_released_oldest_first() -> None:
    book = VipBook("127.1.0.0/16", retain_limit=2)
    book.sync(keys("a", "b", "c"))
    result = book.sync([], now="t")
    assert result.released == keys("a")
    assert [k.service for k, _, _ in book.reserved()] == ["b", "c"]
    # A released address still comes back last: the cursor moved on.
    book.sync(keys("x"))
    assert book.vip(VipKey("default", "x")) == "127.1.0.4"


def test_keys_of_a_deleted_mesh_are_released_not_reserved() -> None:
    book = VipBook("127.1.0.0/16")
    book.sync([BACKEND, OTHER])
    book.sync([BACKEND], meshes={"default", "other"})
    assert [k for k, _, _ in book.reserved()] == [OTHER]
    result = book.sync([BACKEND], meshes={"default"})
    assert result.released == [OTHER] and book.reserved() == []
    book.sync([BACKEND, OTHER], meshes={"default", "other"})
    assert book.vip(OTHER) == "127.1.0.3"  # a new address: its mesh was deleted meanwhile


def test_specs_are_valid_virtual_ips_bodies_per_mesh() -> None:
    book = VipBook("127.1.0.0/16")
    book.sync([BACKEND, BACKEND_Z2, WEB, OTHER])
    book.sync([BACKEND, BACKEND_Z2, OTHER], now="2024-05-01T10:00:00Z")
    specs = book.to_specs()
    assert specs["default"] == {
        "cidr": "127.1.0.0/16",
        "cursor": "127.1.0.5",
        "services": {"backend": {"vip": "127.1.0.1", "zones": {"zone-2": "127.1.0.2"}}},
        "reserved": [{"service": "web", "vip": "127.1.0.3", "since": "2024-05-01T10:00:00Z"}],
    }
    assert specs["other"]["services"] == {"backend": {"vip": "127.1.0.4"}}
    for spec in specs.values():
        assert VIRTUAL_IPS.validate(spec, "spec") == []


def test_restored_book_is_the_same_book() -> None:
    book = VipBook("127.1.0.0/16")
    book.sync([BACKEND, BACKEND_Z2, WEB, OTHER])
    book.sync([BACKEND, OTHER], now="1")
    book.sync([OTHER], now="2")
    restored = roundtrip(book)
    assert restored.active() == book.active()
    assert restored.reserved() == book.reserved()
    # Same future: the next allocations and revivals agree.
    later = [BACKEND, OTHER, VipKey("default", "new")]
    assert restored.sync(later, now="3") == book.sync(later, now="3")
    assert restored.active() == book.active()


def test_restoring_drops_what_it_cannot_trust() -> None:
    specs: list[tuple[str, dict[str, Any]]] = [
        (
            "default",
            {
                "cidr": "127.1.0.0/16",
                "cursor": "127.1.0.9",
                "services": {
                    "backend": {"vip": "127.1.0.1", "zones": {"zone-2": "127.1.0.1"}},
                    "far": {"vip": "10.9.9.9"},
                    "bad": {"vip": "not-an-ip"},
                },
                "reserved": [{"service": "web", "vip": "127.1.0.3"}, {"oops": 1}],
            },
        ),
        ("other", {"cidr": "127.1.0.0/16", "services": {"x": {"vip": "127.1.0.3"}}}),
    ]
    book, problems = VipBook.from_specs(specs, "127.1.0.0/16")
    assert len(problems) == 3, problems  # a VIP twice in one mesh, one outside, one twice across
    assert any("10.9.9.9" in p and "outside" in p for p in problems)
    assert book.active() == {BACKEND: "127.1.0.1"}
    assert [(k, v) for k, v, _ in book.reserved()] == [(WEB, "127.1.0.3")]
    # The latest cursor is kept: the next new key gets 127.1.0.9.
    book.sync([BACKEND, VipKey("default", "new")])
    assert book.vip(VipKey("default", "new")) == "127.1.0.9"


def test_a_new_range_keeps_the_vips_inside_it() -> None:
    book = VipBook("127.1.0.0/24")
    book.sync([BACKEND, WEB])
    specs = list(book.to_specs().items())
    moved, problems = VipBook.from_specs(specs, "127.1.0.0/16")
    assert problems == [] and moved.active() == book.active()
    elsewhere, problems = VipBook.from_specs(specs, "127.9.0.0/16")
    assert len(problems) == 2 and elsewhere.active() == {}
    elsewhere.sync([BACKEND])
    assert elsewhere.vip(BACKEND) == "127.9.0.1"


SERVICES = st.sampled_from([VipKey(m, s, z) for m in "ab" for s in "xyz" for z in (None, "z")])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sets(SERVICES), min_size=1, max_size=12), st.booleans())
def test_property_present_keys_never_move_and_addresses_are_never_shared(
    steps: list[set[VipKey]], persist: bool
) -> None:
    """On a range smaller than the key space: a key present in two consecutive steps keeps
    its VIP, no two keys share one, and a round trip through the store changes nothing."""
    book = VipBook("10.0.0.0/29")  # 6 addresses for up to 12 keys
    before: dict[VipKey, str] = {}
    for i, wanted in enumerate(steps):
        if persist:
            book = roundtrip(book)
        book.sync(wanted, now=str(i))
        now = book.active()
        assert set(now) | set(book.unallocated) == wanted
        for key in wanted & before.keys():
            assert now[key] == before[key]
        assert_unique(book)
        before = now
