"""RingHash / Maglev: keys stick to endpoints, spread, respect weights, skip tried ones."""

from __future__ import annotations

from collections import Counter

import pytest

from mesh_dp.http.hashing import Maglev, Ring, request_hash, stable_hash
from mesh_dp.http.parse import RequestHead, RequestParser
from meshfed.dpconfig.model import HashConf, HashPolicy

NAMES = [f"10.0.0.{i}:80/" for i in range(4)]


def head(raw: bytes) -> RequestHead:
    first = RequestParser().feed(raw)[0]
    assert isinstance(first, RequestHead)
    return first


def get(target: str = "/", *headers: str) -> RequestHead:
    lines = "".join(f"{h}\r\n" for h in headers)
    return head(f"GET {target} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())


def test_stable_hash_is_the_same_every_run() -> None:
    assert stable_hash(b"abc") == 0xD8BB14D833D59559  # BLAKE2b-64: no per-process salt
    assert stable_hash(b"abc") != stable_hash(b"abd")
    assert 0 <= stable_hash(b"x") < 2**64


def test_each_policy_finds_its_input() -> None:
    header = HashPolicy(type="Header", name="x-user")
    cookie = HashPolicy(type="Cookie", name="session")
    query = HashPolicy(type="QueryParameter", name="u")
    conn = HashPolicy(type="Connection", source_ip=True)
    req = get("/p?a=1&u=bob", "X-User: alice", "Cookie: a=b; session=s1")
    assert request_hash([header], req, None) == stable_hash(b"alice")
    assert request_hash([cookie], req, None) == stable_hash(b"s1")
    assert request_hash([query], req, None) == stable_hash(b"bob")
    assert request_hash([conn], req, "10.1.2.3") == stable_hash(b"10.1.2.3")
    assert request_hash([conn], None, "10.1.2.3") == stable_hash(b"10.1.2.3")  # TCP
    assert request_hash([header, cookie, query], get("/"), None) is None
    assert request_hash([HashPolicy(type="Connection")], req, "10.1.2.3") is None
    assert request_hash([header], None, "10.1.2.3") is None  # no request on TCP


def test_policies_combine_and_terminal_stops() -> None:
    a = HashPolicy(type="Header", name="a", terminal=True)
    b = HashPolicy(type="Header", name="b")
    both = get("/", "a: 1", "b: 2")
    only_b = get("/", "b: 2")
    assert request_hash([a, b], both, None) == stable_hash(b"1")  # terminal and found
    assert request_hash([a, b], only_b, None) == stable_hash(b"2")  # terminal not found
    combined = request_hash([HashPolicy(type="Header", name="a"), b], both, None)
    h1, h2 = stable_hash(b"1"), stable_hash(b"2")
    assert combined == (((h1 << 1) | (h1 >> 63)) & (2**64 - 1)) ^ h2


@pytest.mark.parametrize("kind", [Ring, Maglev])
def test_keys_stick_spread_and_follow_weights(kind: type[Ring] | type[Maglev]) -> None:
    conf = HashConf(table_size=1021)
    table = kind(NAMES, [1, 1, 1, 1], conf)
    keys = [stable_hash(f"user-{i}".encode()) for i in range(2000)]
    first = [table.lookup(k, lambda i: True) for k in keys]
    assert first == [table.lookup(k, lambda i: True) for k in keys]  # sticky
    spread = Counter(first)
    assert set(spread) == {0, 1, 2, 3}
    assert min(spread.values()) > 300  # ~500 each
    weighted = Counter(kind(NAMES, [3, 1, 1, 1], conf).lookup(k, lambda i: True) for k in keys)
    assert weighted[0] > 2 * weighted[1]


@pytest.mark.parametrize("kind", [Ring, Maglev])
def test_a_removed_endpoint_moves_only_its_keys(kind: type[Ring] | type[Maglev]) -> None:
    conf = HashConf(table_size=1021)
    keys = [stable_hash(f"k{i}".encode()) for i in range(1000)]
    before = kind(NAMES, [1] * 4, conf)
    after = kind(NAMES[:3], [1] * 3, conf)
    moved = sum(
        1
        for k in keys
        if before.lookup(k, lambda i: True) != 3
        and before.lookup(k, lambda i: True) != after.lookup(k, lambda i: True)
    )
    assert moved < 100  # of ~750 keys that stayed eligible


@pytest.mark.parametrize("kind", [Ring, Maglev])
def test_lookup_skips_ineligible_and_ends(kind: type[Ring] | type[Maglev]) -> None:
    table = kind(NAMES, [1] * 4, HashConf(min_ring_size=16, table_size=13))
    key = stable_hash(b"k")
    owner = table.lookup(key, lambda i: True)
    other = table.lookup(key, lambda i: i != owner)
    assert other is not None and other != owner
    assert table.lookup(key, lambda i: False) is None


def test_maglev_with_a_size_that_is_not_prime_still_fills() -> None:
    table = Maglev(NAMES, [1] * 4, HashConf(table_size=12))
    assert len(table) == 12
    assert {table.lookup(k, lambda i: True) for k in range(12)} == {0, 1, 2, 3}


def test_ring_size_is_bounded() -> None:
    assert len(Ring(NAMES, [1] * 4, HashConf(min_ring_size=64, max_ring_size=64))) == 64
    assert len(Ring(NAMES, [1] * 4, HashConf(min_ring_size=1, max_ring_size=2))) == 4
