"""The schema DSL on its own: each node's rules, paths and messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.resources.errors import FieldError
from meshfed.resources.schema import (
    AnyValue,
    Bool,
    Decimalish,
    Duration,
    Enum,
    Int,
    ListOf,
    MapOf,
    Obj,
    OneOfKinds,
    Str,
    Unsupported,
    as_validator,
    is_address,
    is_base64,
    is_hostname,
    parse_duration,
)

SECOND = 1_000_000_000


def pairs(errors: list[FieldError]) -> list[tuple[str, str]]:
    return [(e.field, e.reason) for e in errors]


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("10s", 10 * SECOND),
        ("1m30s", 90 * SECOND),
        ("500ms", SECOND // 2),
        ("1.5h", 5400 * SECOND),
        (".5s", SECOND // 2),
        ("0", 0),
        ("0s", 0),
        ("+5s", 5 * SECOND),
        ("-1s", -SECOND),
        ("1h2m3s4ms5us6ns", 3723 * SECOND + 4_005_006),
        ("2µs", 2000),
        ("2μs", 2000),
    ],
)
def test_parse_go_durations(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize(
    "text", ["", "10", "s", "1x", "1h30", "abc", "1 s", "--1s", "+", "1d", "1y", "1.2.3s", "1S"]
)
def test_parse_rejects_what_go_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_long_units_for_certificates() -> None:
    assert parse_duration("1d", long_units=True) == 86400 * SECOND
    assert parse_duration("10y", long_units=True) == 10 * 365 * 86400 * SECOND
    assert parse_duration("1d12h", long_units=True) == 36 * 3600 * SECOND


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])),
        min_size=1,
        max_size=6,
    )
)
def test_parse_duration_sums_parts(parts: list[tuple[int, str]]) -> None:
    unit = {"h": 3600 * SECOND, "m": 60 * SECOND, "s": SECOND, "ms": 10**6, "us": 10**3, "ns": 1}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * unit[u] for n, u in parts)


def test_duration_node_messages() -> None:
    assert Duration().check("10s", "d") == []
    assert Duration().check("0s", "d") == []
    assert pairs(Duration().check("-1s", "d")) == [("d", "must not be negative")]
    assert pairs(Duration(positive=True).check("0s", "d")) == [("d", "must be greater than zero")]
    bad = pairs(Duration().check("10 seconds", "d"))
    assert bad == [("d", 'must be a duration such as "10s", "1m30s" or "500ms"')]
    assert Duration().check(10, "d")[0].reason.startswith("must be a duration")


def test_int_rejects_bools_floats_and_out_of_range() -> None:
    port = Int(1, 65535)
    msg = "must be an integer between 1 and 65535"
    assert port.check(80, "p") == []
    for bad in (0, 65536, True, 80.0, "80", None):
        assert pairs(port.check(bad, "p")) == [("p", msg)]
    assert Int(1).check(0, "n")[0].reason == "must be an integer greater than or equal to 1"
    assert Int().check("x", "n")[0].reason == "must be an integer"


def test_str_bool_enum() -> None:
    assert pairs(Str().check(1, "s")) == [("s", "must be a string")]
    assert pairs(Str(non_empty=True).check("", "s")) == [("s", "must not be empty")]
    assert pairs(Str(pattern=r"[a-z]+", message="lower").check("A", "s")) == [("s", "lower")]
    assert Str(max_len=2).check("abc", "s")[0].reason == "must be at most 2 characters"
    assert pairs(Bool().check("true", "b")) == [("b", "must be a boolean (true or false)")]
    color = Enum("Red", "Green", unsupported={"Blue": "is not supported by meshfed"})
    assert color.check("Red", "c") == []
    assert pairs(color.check("red", "c")) == [("c", "must be one of Red, Green")]
    assert pairs(color.check("Blue", "c")) == [("c", "Blue is not supported by meshfed")]


def test_list_and_map_paths() -> None:
    ports = ListOf(Int(1, 10), min_items=1)
    assert pairs(ports.check([1, 11, "x"], "p")) == [
        ("p[1]", "must be an integer between 1 and 10"),
        ("p[2]", "must be an integer between 1 and 10"),
    ]
    assert pairs(ports.check([], "p")) == [("p", "must have at least 1 item")]
    assert pairs(ports.check({}, "p")) == [("p", "must be a list")]
    tags = MapOf(Str(non_empty=True), keys=Str(pattern=r"[a-z/.]+", message="bad key"))
    assert pairs(tags.check({"a/b": "x", "B": "y", "c": ""}, "t")) == [
        ("t['B']", "key bad key"),
        ("t['c']", "must not be empty"),
    ]
    assert pairs(tags.check([], "t")) == [("t", "must be a map of keys to values")]


def test_obj_reports_everything_at_once() -> None:
    schema = Obj(
        {"name": Str(), "port": Int(1, 9), "opt": Bool()},
        required=("name", "port"),
        at_least_one=("opt", "port"),
    )
    assert schema.check({"name": "a", "port": 1}, "") == []
    assert pairs(schema.check({"port": 0, "extra": 1, "opt": None}, "root")) == [
        ("root.name", "is required"),
        ("root.port", "must be an integer between 1 and 9"),
        ("root.extra", "unknown field (allowed: name, port, opt)"),
    ]
    assert pairs(schema.check("x", "root")) == [("root", "must be an object")]
    lonely = Obj({"a": Bool(), "b": Bool()}, at_least_one=("a", "b"))
    assert pairs(lonely.check({}, "x")) == [("x", "at least one of 'a', 'b' must be set")]


def test_obj_checks_and_open_objects() -> None:
    def pair(obj: dict[str, Any], path: str) -> list[FieldError]:
        if obj.get("low", 0) > obj.get("high", 0):
            return [FieldError(f"{path}.low", "must not exceed high")]
        return []

    schema = Obj({"low": Int(), "high": Int()}, checks=(pair,))
    assert pairs(schema.check({"low": 5, "high": 1}, "r")) == [("r.low", "must not exceed high")]
    assert Obj({}, open=True).check({"anything": [1, {"x": None}]}, "") == []
    with pytest.raises(ValueError, match="not declared"):
        Obj({"a": Bool()}, required=("b",))


def test_one_of_kinds() -> None:
    ref = OneOfKinds(
        {
            "Mesh": Obj({"kind": Str()}),
            "MeshService": Obj({"kind": Str(), "name": Str()}, required=("name",)),
        },
        unsupported={"MeshGateway": "is not supported by meshfed"},
    )
    assert ref.check({"kind": "Mesh"}, "t") == []
    assert pairs(ref.check({"kind": "MeshService"}, "t")) == [("t.name", "is required")]
    assert pairs(ref.check({"kind": "Mesh", "name": "x"}, "t")) == [
        ("t.name", "unknown field (allowed: kind)")
    ]
    allowed = "must be one of Mesh, MeshService"
    assert pairs(ref.check({}, "t")) == [("t.kind", f"is required; {allowed}")]
    assert pairs(ref.check({"kind": "Dataplane"}, "t")) == [
        ("t.kind", f"'Dataplane' is not allowed here; {allowed}")
    ]
    assert pairs(ref.check({"kind": "MeshGateway"}, "t")) == [
        ("t.kind", f"MeshGateway is not supported by meshfed; {allowed}")
    ]
    assert pairs(ref.check({"kind": 3}, "t")) == [("t.kind", f"must be a string; {allowed}")]
    assert pairs(ref.check([], "t")) == [("t", "must be an object")]


def test_decimalish_accepts_ints_and_decimal_strings() -> None:
    pct = Decimalish(Decimal(0), Decimal(100))
    for good in (0, 100, "99.5", "0.01"):
        assert pct.check(good, "p") == []
    for bad in (-1, 101, "100.1", "abc", "NaN", "Infinity", True, 5.5, None):
        assert len(pct.check(bad, "p")) == 1, bad
    factor = Decimalish(Decimal(0), exclusive_min=True)
    assert factor.check("1.9", "f") == []
    assert len(factor.check(0, "f")) == 1


def test_unsupported_and_any() -> None:
    assert pairs(Unsupported("no").check({}, "x")) == [("x", "no")]
    assert AnyValue().check(object(), "x") == []


def test_as_validator_uses_prefix() -> None:
    validate = as_validator(Obj({"a": Int()}))
    assert pairs(validate({"a": "x"}, "spec")) == [("spec.a", "must be an integer")]
    assert pairs(validate({"a": "x"}, "")) == [("a", "must be an integer")]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("10.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("backend.mesh", True),
        ("my-host", True),
        ("host.example.com.", True),
        ("300.1.1.1", False),
        ("-bad.com", False),
        ("bad-.com", False),
        ("a..b", False),
        ("", False),
        ("under_score", False),
        ("a" * 64, False),
        ("10.0.0.1:80", False),
    ],
)
def test_addresses(text: str, ok: bool) -> None:
    assert is_address(text) is ok


def test_hostname_length_and_base64() -> None:
    assert is_hostname(".".join(["a" * 60] * 4))
    assert not is_hostname(".".join(["a" * 63] * 5))
    assert is_base64("dGVzdAo=")
    assert is_base64("")
    assert not is_base64("dGVzdAo")  # missing padding
    assert not is_base64("not base64!")
