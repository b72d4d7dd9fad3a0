"""A small declarative schema language for resource bodies.

Each resource type declares its shape once (objects with known fields, required fields, strings,
integers, enums, Go-style durations, lists, maps, one-of-kinds) and gets a validator that reports
every problem at once, each with its full path (``spec.to[0].default.http.requestTimeout``).
Anything a declaration cannot say is written as a small check function attached to an `Obj`.

Conventions: unknown fields are errors; an optional field set to null counts as absent;
`Unsupported` marks fields Kuma has but meshfed refuses, so users get a reason instead of an
"unknown field" or, worse, a setting that is silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from meshfed.resources.errors import FieldError

# An extra rule on an object: gets the raw (already type-checked) dict and its path.
Check = Callable[[dict[str, Any], str], list[FieldError]]


def join(path: str, name: str) -> str:
    """`spec` + `to` -> `spec.to`; the root path is the empty string."""
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k!r}]"


def one_of_text(values: Iterable[str]) -> str:
    return "must be one of " + ", ".join(values)


class Schema(ABC):
    """A node of a schema: checks one JSON value found at `path`."""

    @abstractmethod
    def check(self, value: Any, path: str) -> list[FieldError]: ...


class AnyValue(Schema):
    """Accepts anything (opaque or status data)."""

    def check(self, value: Any, path: str) -> list[FieldError]:
        return []


class Unsupported(Schema):
    """A field Kuma knows but meshfed refuses; any value gets `reason`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, value: Any, path: str) -> list[FieldError]:
        return [FieldError(path, self.reason)]


class Str(Schema):
    """A string, optionally non-empty, matching a pattern, or passing a predicate."""

    def __init__(
        self,
        *,
        non_empty: bool = False,
        pattern: str | None = None,
        predicate: Callable[[str], bool] | None = None,
        message: str = "",
        max_len: int | None = None,
    ) -> None:
        self.non_empty = non_empty
        self.pattern = re.compile(pattern) if pattern else None
        self.predicate = predicate
        self.message = message or (f"must match {pattern}" if pattern else "is not valid")
        self.max_len = max_len

    def check(self, value: Any, path: str) -> list[FieldError]:
        if not isinstance(value, str):
            return [FieldError(path, "must be a string")]
        if self.non_empty and not value:
            return [FieldError(path, "must not be empty")]
        if self.max_len is not None and len(value) > self.max_len:
            return [FieldError(path, f"must be at most {self.max_len} characters")]
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return [FieldError(path, self.message)]
        if self.predicate is not None and not self.predicate(value):
            return [FieldError(path, self.message)]
        return []


class Int(Schema):
    """An integer (booleans and floats are rejected), optionally bounded."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def _message(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"must be an integer between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f"must be an integer greater than or equal to {self.minimum}"
        if self.maximum is not None:
            return f"must be an integer less than or equal to {self.maximum}"
        return "must be an integer"

    def check(self, value: Any, path: str) -> list[FieldError]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [FieldError(path, self._message())]
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            return [FieldError(path, self._message())]
        return []


class Bool(Schema):
    def check(self, value: Any, path: str) -> list[FieldError]:
        if not isinstance(value, bool):
            return [FieldError(path, "must be a boolean (true or false)")]
        return []


class Enum(Schema):
    """One of fixed strings; `unsupported` maps values Kuma has but meshfed refuses to why."""

    def __init__(self, *values: str, unsupported: Mapping[str, str] | None = None) -> None:
        self.values = values
        self.unsupported = dict(unsupported or {})

    def check(self, value: Any, path: str) -> list[FieldError]:
        if isinstance(value, str) and value in self.unsupported:
            return [FieldError(path, f"{value} {self.unsupported[value]}")]
        if not isinstance(value, str) or value not in self.values:
            return [FieldError(path, one_of_text(self.values))]
        return []


_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
# Kuma's certificate durations also accept days and years ("1d", "10y").
_LONG_UNITS = {**_GO_UNITS, "d": 24 * 3600 * 1_000_000_000, "y": 365 * 24 * 3600 * 1_000_000_000}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([a-zµμ]+)")


def parse_duration(text: str, *, long_units: bool = False) -> int | None:
    """Go's time.ParseDuration: "1h30m", "500ms", "-1.5s", "0". Nanoseconds, or None if bad."""
    units = _LONG_UNITS if long_units else _GO_UNITS
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(2) not in units:
            return None
        total += Decimal(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return sign * int(total)


class Duration(Schema):
    """A Go duration string; never negative, optionally strictly positive."""

    def __init__(self, *, positive: bool = False, long_units: bool = False) -> None:
        self.positive = positive
        self.long_units = long_units

    def check(self, value: Any, path: str) -> list[FieldError]:
        ns = parse_duration(value, long_units=self.long_units) if isinstance(value, str) else None
        if ns is None:
            examples = '"30d", "10y", "1h"' if self.long_units else '"10s", "1m30s" or "500ms"'
            return [FieldError(path, f"must be a duration such as {examples}")]
        if ns < 0:
            return [FieldError(path, "must not be negative")]
        if self.positive and ns == 0:
            return [FieldError(path, "must be greater than zero")]
        return []


class Decimalish(Schema):
    """Kuma's IntOrString numbers: an integer, or a decimal written as a string ("99.9")."""

    def __init__(
        self, minimum: Decimal, maximum: Decimal | None = None, *, exclusive_min: bool = False
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.exclusive_min = exclusive_min

    def _message(self) -> str:
        low = f"greater than {self.minimum}" if self.exclusive_min else f"at least {self.minimum}"
        high = f" and at most {self.maximum}" if self.maximum is not None else ""
        return f'must be an integer or a decimal string (e.g. "99.5") {low}{high}'

    def check(self, value: Any, path: str) -> list[FieldError]:
        number: Decimal | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = Decimal(value)
        elif isinstance(value, str):
            try:
                number = Decimal(value)
            except InvalidOperation:
                number = None
            if number is not None and not number.is_finite():
                number = None
        if number is None:
            return [FieldError(path, self._message())]
        too_low = number <= self.minimum if self.exclusive_min else number < self.minimum
        if too_low or (self.maximum is not None and number > self.maximum):
            return [FieldError(path, self._message())]
        return []


class ListOf(Schema):
    def __init__(self, item: Schema, *, min_items: int = 0) -> None:
        self.item = item
        self.min_items = min_items

    def check(self, value: Any, path: str) -> list[FieldError]:
        if not isinstance(value, list):
            return [FieldError(path, "must be a list")]
        errors: list[FieldError] = []
        if len(value) < self.min_items:
            noun = "item" if self.min_items == 1 else "items"
            errors.append(FieldError(path, f"must have at least {self.min_items} {noun}"))
        for i, item in enumerate(value):
            errors += self.item.check(item, index(path, i))
        return errors


class MapOf(Schema):
    """An object with free-form keys (tags, labels), each key and value checked."""

    def __init__(self, value: Schema, *, keys: Schema | None = None, min_items: int = 0) -> None:
        self.value = value
        self.keys = keys
        self.min_items = min_items

    def check(self, value: Any, path: str) -> list[FieldError]:
        if not isinstance(value, dict):
            return [FieldError(path, "must be a map of keys to values")]
        errors: list[FieldError] = []
        if len(value) < self.min_items:
            errors.append(FieldError(path, f"must have at least {self.min_items} entry"))
        for k, v in value.items():
            item_path = key(path, str(k))
            if self.keys is not None:
                errors += [FieldError(item_path, "key " + e.reason) for e in self.keys.check(k, "")]
            errors += self.value.check(v, item_path)
        return errors


class Obj(Schema):
    """An object with known fields. Unknown fields are errors unless `open`."""

    def __init__(
        self,
        fields: Mapping[str, Schema],
        *,
        required: Sequence[str] = (),
        at_least_one: Sequence[str] = (),
        checks: Sequence[Check] = (),
        open: bool = False,
    ) -> None:
        unknown_required = set(required) - set(fields)
        if unknown_required:
            raise ValueError(f"required fields not declared: {sorted(unknown_required)}")
        self.fields = dict(fields)
        self.required = tuple(required)
        self.at_least_one = tuple(at_least_one)
        self.checks = tuple(checks)
        self.open = open

    def check(self, value: Any, path: str) -> list[FieldError]:
        if not isinstance(value, dict):
            return [FieldError(path, "must be an object")]
        errors: list[FieldError] = []
        for name in self.required:
            if value.get(name) is None:
                errors.append(FieldError(join(path, name), "is required"))
        for name, item in value.items():
            schema = self.fields.get(name)
            if schema is None:
                if not self.open:
                    allowed = ", ".join(self.fields) or "none"
                    errors.append(
                        FieldError(join(path, str(name)), f"unknown field (allowed: {allowed})")
                    )
                continue
            if item is None:
                continue  # null means "not set"; required ones were reported above
            errors += schema.check(item, join(path, name))
        if self.at_least_one and all(value.get(n) is None for n in self.at_least_one):
            names = ", ".join(f"'{n}'" for n in self.at_least_one)
            errors.append(FieldError(path, f"at least one of {names} must be set"))
        for extra in self.checks:
            errors += extra(value, path)
        return errors


class OneOfKinds(Schema):
    """An object whose `discriminator` field picks the shape of the rest (targetRef.kind)."""

    def __init__(
        self,
        variants: Mapping[str, Obj],
        *,
        discriminator: str = "kind",
        unsupported: Mapping[str, str] | None = None,
    ) -> None:
        self.variants = dict(variants)
        self.discriminator = discriminator
        self.unsupported = dict(unsupported or {})

    def check(self, value: Any, path: str) -> list[FieldError]:
        if not isinstance(value, dict):
            return [FieldError(path, "must be an object")]
        kind = value.get(self.discriminator)
        kind_path = join(path, self.discriminator)
        allowed = one_of_text(self.variants)
        if kind is None:
            return [FieldError(kind_path, f"is required; {allowed}")]
        if isinstance(kind, str) and kind in self.unsupported:
            return [FieldError(kind_path, f"{kind} {self.unsupported[kind]}; {allowed}")]
        if isinstance(kind, str) and kind not in self.variants:
            return [FieldError(kind_path, f"{kind!r} is not allowed here; {allowed}")]
        if not isinstance(kind, str):
            return [FieldError(kind_path, f"must be a string; {allowed}")]
        return self.variants[kind].check(value, path)


class Custom(Schema):
    """Escape hatch: a function checks the value."""

    def __init__(self, fn: Callable[[Any, str], list[FieldError]]) -> None:
        self.fn = fn

    def check(self, value: Any, path: str) -> list[FieldError]:
        return self.fn(value, path)


def as_validator(schema: Schema) -> Callable[[dict[str, Any], str], list[FieldError]]:
    """Adapts a schema to the descriptor's `(body, prefix) -> errors` signature."""

    def validate(body: dict[str, Any], prefix: str) -> list[FieldError]:
        return schema.check(body, prefix)

    return validate


# --- common value predicates -------------------------------------------------------------

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_hostname(text: str) -> bool:
    """RFC 1123 host name (letters, digits, '-', dot-separated labels, <= 253 chars)."""
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    if name.rsplit(".", 1)[-1].isdigit():
        return False  # "300.1.1.1" is a bad IP address, not a host name
    return all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_address(text: str) -> bool:
    """An IP address or a host name."""
    return is_ip(text) or is_hostname(text)


def is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
