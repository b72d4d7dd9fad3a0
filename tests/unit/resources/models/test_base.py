"""The models' shared rules on small models: each value type's messages, paths, every
problem at once, cross-field rules, and the conversion to the API's FieldErrors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from pydantic_core import InitErrorDetails

from meshfed.resources.errors import ValidationError
from meshfed.resources.models.base import (
    Choice,
    GoDuration,
    IntOrDecimal,
    Keyed,
    Model,
    OpenObject,
    Range,
    Text,
    check,
    go_duration,
    parse,
    problem,
)
from meshfed.resources.models.common import ServiceTags


def pairs(
    model: type[Model] | type[OpenObject], body: Any, prefix: str = ""
) -> list[tuple[str, str]]:
    return [(e.field, e.reason) for e in check(model, body, prefix)]


class Values(Model):
    d: Annotated[timedelta, GoDuration()] | None = None
    pd: Annotated[timedelta, GoDuration(positive=True)] | None = None
    port: Annotated[int, Range(1, 65535)] | None = None
    low: Annotated[int, Range(1)] | None = None
    n: Annotated[int, Range()] | None = None
    s: str | None = None
    ne: Annotated[str, Text(non_empty=True)] | None = None
    lower: Annotated[str, Text(pattern=r"[a-z]+", message="lower")] | None = None
    short: Annotated[str, Text(max_len=2)] | None = None
    b: bool | None = None
    color: Annotated[Literal["Red", "Green"], Choice((("Blue", "is not supported"),))] | None = None
    pct: Annotated[Decimal, IntOrDecimal(Decimal(0), Decimal(100))] | None = None
    factor: Annotated[Decimal, IntOrDecimal(Decimal(0), exclusive_min=True)] | None = None


def one(field: str, value: Any) -> list[tuple[str, str]]:
    return pairs(Values, {field: value})


def test_durations_read_as_timedeltas_with_kuma_messages() -> None:
    assert parse(Values, {"d": "1m30s"}).d == timedelta(seconds=90)
    assert parse(Values, {"d": "0s"}).d == timedelta(0)
    assert one("d", "-1s") == [("d", "must not be negative")]
    assert one("pd", "0s") == [("pd", "must be greater than zero")]
    assert one("d", "10 seconds") == [("d", 'must be a duration such as "10s", "1m30s" or "500ms"')]
    assert one("d", 10)[0][1].startswith("must be a duration")
    assert go_duration(timedelta(minutes=1)) == "1m"
    assert go_duration(timedelta(milliseconds=500)) == "500ms"
    assert go_duration(timedelta(0)) == "0s"


def test_int_rejects_bools_floats_strings_and_out_of_range() -> None:
    msg = "must be an integer between 1 and 65535"
    assert one("port", 80) == []
    for bad in (0, 65536, True, 80.0, "80"):
        assert one("port", bad) == [("port", msg)], bad
    assert one("low", 0) == [("low", "must be an integer greater than or equal to 1")]
    assert one("n", "x") == [("n", "must be an integer")]


def test_str_bool_enum() -> None:
    assert one("s", 1) == [("s", "must be a string")]
    assert one("ne", "") == [("ne", "must not be empty")]
    assert one("lower", "A") == [("lower", "lower")]
    assert one("short", "abc") == [("short", "must be at most 2 characters")]
    assert one("b", "true") == [("b", "must be a boolean (true or false)")]
    assert one("color", "Red") == []
    assert one("color", "red") == [("color", "must be one of Red, Green")]
    assert one("color", "Blue") == [("color", "Blue is not supported")]


def test_int_or_decimal() -> None:
    for good in (0, 100, "99.5", "0.01"):
        assert one("pct", good) == [], good
    for bad in (-1, 101, "100.1", "abc", "NaN", "Infinity", True, 5.5):
        assert len(one("pct", bad)) == 1, bad
    assert one("factor", "1.9") == []
    assert len(one("factor", 0)) == 1


class Item(Model):
    name: str
    port: Annotated[int, Range(1, 9)]
    opt: bool | None = None
    at_least_one = ("opt", "port")


class Holder(Model):
    ports: list[Annotated[int, Range(1, 10)]] | None = None
    items: list[Item] | None = None
    tags: (
        Annotated[
            dict[
                Annotated[str, Text(pattern=r"[a-z/.]+", message="bad key")],
                Annotated[str, Text(non_empty=True)],
            ],
            Keyed(),
        ]
        | None
    ) = None


def test_list_and_map_paths() -> None:
    assert pairs(Holder, {"ports": [1, 11, "x"]}, "p") == [
        ("p.ports[1]", "must be an integer between 1 and 10"),
        ("p.ports[2]", "must be an integer between 1 and 10"),
    ]
    assert pairs(Holder, {"ports": {}}) == [("ports", "must be a list")]
    assert pairs(Holder, {"tags": {"a/b": "x", "B": "y", "c": ""}}) == [
        ("tags['B']", "key bad key"),
        ("tags['c']", "must not be empty"),
    ]
    assert pairs(Holder, {"tags": []}) == [("tags", "must be a map of keys to values")]


def test_objects_report_everything_at_once() -> None:
    assert pairs(Item, {"name": "a", "port": 1}) == []
    assert pairs(Item, {"port": 0, "extra": 1, "opt": None}, "root") == [
        ("root.name", "is required"),
        ("root.port", "must be an integer between 1 and 9"),
        ("root.extra", "unknown field (allowed: name, port, opt)"),
    ]
    assert pairs(Item, "x", "root") == [("root", "must be an object")]
    assert pairs(Holder, {"items": [{"name": "a"}]}) == [
        ("items[0].port", "is required"),
        ("items[0]", "at least one of 'opt', 'port' must be set"),
    ]


class Pair(Model):
    low: int | None = None
    high: int | None = None
    refused = {"old": "is gone"}
    old: str | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        if data.get("low", 0) > data.get("high", 0):
            return [problem(("low",), "must not exceed high")]
        return []


def test_rules_refused_fields_and_open_objects() -> None:
    assert pairs(Pair, {"low": 5, "high": 1}, "r") == [("r.low", "must not exceed high")]
    assert pairs(Pair, {"old": {"any": "value"}}) == [("old", "is gone")]
    assert pairs(OpenObject, {"anything": [1, {"x": None}]}) == []
    assert pairs(OpenObject, []) == [("", "must be an object")]


def test_parse_raises_the_api_error_with_paths() -> None:
    with pytest.raises(ValidationError) as info:
        parse(Item, {"name": 1, "port": 1}, "spec")
    assert [(e.field, e.reason) for e in info.value.errors] == [("spec.name", "must be a string")]


def test_a_container_rule_never_reads_the_wrong_container() -> None:
    """Found by `make fuzz`: a Dataplane inbound's tags given as a list reached the tags rule,
    which read it as a map: an AttributeError instead of a validation error (parse_hello)."""

    class Tagged(Model):
        tags: ServiceTags | None = None

    assert pairs(Tagged, {"tags": ["kuma.io/service"]}) == [
        ("tags", "must be a map of keys to values")
    ]
    assert pairs(Tagged, {"tags": {}}) == [("tags", "must contain the 'kuma.io/service' tag")]
