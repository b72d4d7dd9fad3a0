"""Port choice of `meshctl up`: base layout, reuse of remembered ports, no duplicates."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from meshctl.up.ports import (
    PortError,
    choose_ports,
    pick_free_port,
    port_keys,
    read_remembered,
    tcp_port_free,
    write_remembered,
    zone_names,
)

KEYS = port_keys(zone_names(2))


class FakeKernel:
    """Ports in `busy` are taken; free ones are handed out from 40000 up."""

    def __init__(self, busy: frozenset[int] = frozenset()) -> None:
        self.busy = set(busy)
        self.next = 40000

    def is_free(self, port: int) -> bool:
        return port not in self.busy

    def pick(self, taken: set[int]) -> int:
        while self.next in taken or self.next in self.busy:
            self.next += 1
        self.next += 1
        return self.next - 1


def test_keys_are_global_api_kds_then_zones() -> None:
    assert KEYS == [
        "global.api",
        "global.kds",
        "zone-1.api",
        "zone-2.api",
        "zone-1.dns",
        "zone-2.dns",
        "zone-1.dp",
        "zone-2.dp",
        "zone-1.mads",
        "zone-2.mads",
    ]


def test_base_port_lays_ports_out_in_order() -> None:
    k = FakeKernel()
    assert choose_ports(KEYS, {"global.api": 1}, 7000, k.is_free, k.pick) == {
        "global.api": 7000,
        "global.kds": 7001,
        "zone-1.api": 7002,
        "zone-2.api": 7003,
        "zone-1.dns": 7004,
        "zone-2.dns": 7005,
        "zone-1.dp": 7006,
        "zone-2.dp": 7007,
        "zone-1.mads": 7008,
        "zone-2.mads": 7009,
    }


def test_base_port_in_use_is_a_clear_error() -> None:
    k = FakeKernel(busy=frozenset({7002}))
    with pytest.raises(PortError, match=r"port 7002 \(zone-1 API\) is in use"):
        choose_ports(KEYS, {}, 7000, k.is_free, k.pick)
    with pytest.raises(PortError, match="no room"):
        choose_ports(KEYS, {}, 65534, k.is_free, k.pick)


def test_remembered_ports_are_reused_when_free() -> None:
    k = FakeKernel()
    remembered = {"global.api": 5001, "global.kds": 5002, "zone-1.api": 5003, "zone-2.api": 5004}
    remembered |= {"zone-1.dns": 5005, "zone-2.dns": 5006, "zone-1.dp": 5007, "zone-2.dp": 5008}
    remembered |= {"zone-1.mads": 5009, "zone-2.mads": 5010}
    assert choose_ports(KEYS, remembered, 0, k.is_free, k.pick) == remembered


def test_a_taken_or_duplicate_remembered_port_is_replaced() -> None:
    k = FakeKernel(busy=frozenset({5002}))
    remembered = {"global.api": 5001, "global.kds": 5002, "zone-1.api": 5001}
    ports = choose_ports(KEYS, remembered, 0, k.is_free, k.pick)
    assert ports["global.api"] == 5001
    assert ports["global.kds"] == 40000
    assert ports["zone-1.api"] == 40001
    assert ports["zone-2.api"] == 40002
    assert len(set(ports.values())) == len(KEYS)


def test_remembered_file_round_trip_and_damage_tolerance(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    assert read_remembered(path) == {}
    write_remembered(path, {"global.api": 5001})
    assert read_remembered(path) == {"global.api": 5001}
    path.write_text('{"a": 1, "b": "x", "c": 70000, "d": true, "e": 0}')
    assert read_remembered(path) == {"a": 1}
    path.write_text("[1, 2]")
    assert read_remembered(path) == {}
    path.write_text("{")
    assert read_remembered(path) == {}


def test_real_port_checks() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not tcp_port_free(port)
        picked = pick_free_port({port})
        assert picked != port
    assert tcp_port_free(port)
    assert tcp_port_free(picked)


PREFERRED = {"global.api": 5681, "global.kds": 5685}


def test_preferred_global_ports_are_taken_when_free_and_nothing_is_remembered() -> None:
    k = FakeKernel()
    ports = choose_ports(KEYS, {}, 0, k.is_free, k.pick, preferred=PREFERRED)
    assert ports["global.api"] == 5681
    assert ports["global.kds"] == 5685
    assert ports["zone-1.api"] == 40000


def test_a_free_preferred_port_wins_over_a_remembered_fallback() -> None:
    """5681 was busy once, so 41000 was remembered; once 5681 is free it is taken again."""
    k = FakeKernel()
    ports = choose_ports(KEYS, {"global.api": 41000}, 0, k.is_free, k.pick, preferred=PREFERRED)
    assert ports["global.api"] == 5681


def test_busy_preferred_falls_back_to_remembered_then_any() -> None:
    k = FakeKernel(busy=frozenset({5681, 5685}))
    ports = choose_ports(KEYS, {"global.api": 41000}, 0, k.is_free, k.pick, preferred=PREFERRED)
    assert ports["global.api"] == 41000
    assert ports["global.kds"] == 40000


def test_preferred_zero_means_any_free_port() -> None:
    k = FakeKernel()
    ports = choose_ports(KEYS, {}, 0, k.is_free, k.pick, preferred={"global.api": 0})
    assert ports["global.api"] == 40000
