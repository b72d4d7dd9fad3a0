"""The base of every resource model, the value types they share, and the one place where
pydantic's errors become meshfed's (Kuma's) `FieldError`s.

Conventions (Kuma's, as the API has always applied them): field names are camelCase; an
unknown field is an error naming the allowed ones; a field set to null counts as absent;
JSON types are strict (no "5" for 5, no true for 1); every problem is reported at once, each
at its path. A field Kuma has but meshfed refuses is declared (the schema shows Kuma's shape)
and listed in `refused` with the reason, which is reported whatever its value.

Cross-field rules (`rules`) read the raw object, so they run even when a field is malformed,
as the rules of a document a user is fixing should.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, NoReturn, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic import ValidationError as PydanticError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from meshfed.resources.errors import FieldError, ValidationError, index, join, key
from meshfed.resources.values import parse_duration

NOT_SUPPORTED = "is not supported by meshfed"

# Kuma parses durations as Go's time.Duration: int64 nanoseconds.
_MAX_DURATION_NS = 2**63 - 1
_KIND = "meshfed"
# Marks a map key in an error location ("tags" then "['kuma.io/service']"), not a field.
_MAP_KEY = "\x1f"

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

# Set while `read_stored` reads a body that was validated where it entered the system: the
# checks meshfed adds in Python (cross-field rules, patterns, tag and address rules) are
# skipped; pydantic's structure (types, required fields, unknown fields, nested models) and
# conversions (durations, decimals, defaults) are kept.
_STORED: ContextVar[bool] = ContextVar("meshfed_stored_body", default=False)


def reading_stored() -> bool:
    """Whether the body being read was validated already (`read_stored`)."""
    return _STORED.get()


def read_stored(model: type[M], body: Any) -> M:
    """`body`, validated when it was stored, as `model`: typed, defaults filled in, without
    repeating meshfed's own checks (about 3x faster on a Dataplane). Raises pydantic's
    ValidationError if its structure does not fit (written by an older version)."""
    token = _STORED.set(True)
    try:
        return model.model_validate(body)
    finally:
        _STORED.reset(token)


def problem(loc: Loc, reason: str, value: Any = None) -> InitErrorDetails:
    """One error in meshfed's words, at `loc` below the object that reports it."""
    return InitErrorDetails(
        type=PydanticCustomError(_KIND, "{reason}", {"reason": reason}), loc=loc, input=value
    )


def fail(details: Sequence[InitErrorDetails]) -> NoReturn:
    raise PydanticError.from_exception_data(_KIND, list(details))


def map_key(k: str) -> str:
    return _MAP_KEY + k


# pydantic's own error types, in meshfed's words (the rest are raised by meshfed's types).
_REASONS: Mapping[str, str] = {
    "missing": "is required",
    "string_type": "must be a string",
    "bool_type": "must be a boolean (true or false)",
    "list_type": "must be a list",
    "dict_type": "must be a map of keys to values",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "int_type": "must be an integer",
    "extra_forbidden": "unknown field",
}


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind == _KIND:
        return str(error["ctx"]["reason"])
    if kind == "too_short":
        n = error["ctx"]["min_length"]
        what = "entry" if error["ctx"].get("field_type") == "Dictionary" else "item"
        return f"must have at least {n} {what}{'' if n == 1 or what == 'entry' else 's'}"
    return _REASONS.get(kind, str(error["msg"]))


def reworded(exc: PydanticError, prefix: Loc = ()) -> list[InitErrorDetails]:
    """`exc`'s errors in meshfed's words (idempotent), their locations under `prefix`."""
    return [problem((*prefix, *e["loc"]), _reason(e), e.get("input")) for e in exc.errors()]


def field_errors(exc: PydanticError, prefix: str) -> list[FieldError]:
    """The one conversion from pydantic to the API's errors: `spec.to[0].default.idleTimeout`."""
    out: list[FieldError] = []
    for e in exc.errors():
        path = prefix
        for step in e["loc"]:
            if isinstance(step, int):
                path = index(path, step)
            elif step.startswith(_MAP_KEY):
                path = key(path, step[1:])
            else:
                path = join(path, step)
        out.append(FieldError(path, _reason(e)))
    return out


def check(model: type[BaseModel], body: Any, prefix: str) -> list[FieldError]:
    """Every problem of `body` as `model`, at its path under `prefix`."""
    try:
        model.model_validate(body)
    except PydanticError as exc:
        return field_errors(exc, prefix)
    return []


def parse(model: type[M], body: Any, prefix: str = "") -> M:
    """`body` as `model`, or meshfed's ValidationError listing every problem."""
    try:
        return model.model_validate(body)
    except PydanticError as exc:
        raise ValidationError(field_errors(exc, prefix)) from None


def one_of_text(values: Sequence[str]) -> str:
    return "must be one of " + ", ".join(values)


def _overrides(cls: type[Model], method: str) -> bool:
    mine: Any = getattr(cls, method)
    base: Any = getattr(Model, method)
    return mine.__func__ is not base.__func__


class Model(BaseModel):
    """A Kuma object: camelCase, closed, strict, with meshfed's error rules (module doc)."""

    # defer_build: a model's validator is built on its first use, so a process that validates
    # one type does not pay for building all of them (the cold sync of a zone, decision 71).
    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", strict=True, frozen=True, defer_build=True
    )

    # Kuma fields meshfed refuses, by alias, with the reason (reported for any value).
    refused: ClassVar[Mapping[str, str]] = {}
    # At least one of these (aliases) must be set.
    at_least_one: ClassVar[tuple[str, ...]] = ()
    _aliases: ClassVar[tuple[str, ...]] = ()
    _has_rules: ClassVar[bool] = False
    _static: ClassVar[bool] = True  # gate, required_in and refused_in are the defaults
    _refused_keys: ClassVar[frozenset[str]] = frozenset()
    _one_of: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._aliases = tuple(f.alias or name for name, f in cls.model_fields.items())
        cls._has_rules = _overrides(cls, "rules")
        cls._static = not any(_overrides(cls, m) for m in ("gate", "required_in", "refused_in"))
        cls._refused_keys = frozenset(cls.refused)
        cls._one_of = frozenset(cls.at_least_one)

    @classmethod
    def _plain(cls, data: dict[str, Any]) -> bool:
        """Whether pydantic alone can judge `data`: no null, nothing refused, nothing
        required by the document's values missing, `at_least_one` met. Then a valid document
        costs one pass (the fast path); any problem is reported by the full pass."""
        if None in data.values():
            return False
        if cls._static:
            return cls._refused_keys.isdisjoint(data) and (
                not cls._one_of or not cls._one_of.isdisjoint(data)
            )
        if cls.gate(data):
            return False
        if not cls.refused_in(data).keys().isdisjoint(data):
            return False
        if any(n not in data for n in cls.required_in(data)):
            return False
        return not cls.at_least_one or not data.keys().isdisjoint(cls.at_least_one)

    @classmethod
    def gate(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Problems that make the rest meaningless (a targetRef's kind): reported alone."""
        return []

    @classmethod
    def required_in(cls, data: dict[str, Any]) -> tuple[str, ...]:
        """Fields required by the document's own values (a MeshService targetRef's name)."""
        return ()

    @classmethod
    def refused_in(cls, data: dict[str, Any]) -> Mapping[str, str]:
        """`refused`, for models whose refused fields depend on the document."""
        return cls.refused

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Cross-field rules on the raw object (nulls removed); locations are relative."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _meshfed_rules(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        if isinstance(data, cls):
            return data
        if type(data) is dict and _STORED.get():
            if None in data.values():
                data = {k: v for k, v in data.items() if v is not None}
            return handler(data)
        if type(data) is not dict:
            if not isinstance(data, dict):
                raise PydanticCustomError(_KIND, "{reason}", {"reason": "must be an object"})
        elif cls._plain(data):
            try:
                quick = handler(data)
            except PydanticError:
                pass  # the full pass below reports every problem, in meshfed's words
            else:
                if not cls._has_rules or not cls.rules(data):
                    return quick
        order = {k: i for i, k in enumerate(data)}
        body = {k: v for k, v in data.items() if v is not None}
        stop = cls.gate(body)
        if stop:
            fail(stop)
        refused = cls.refused_in(body)
        raw = dict(body)
        found: list[tuple[tuple[int, int], InitErrorDetails]] = [
            ((0, -1), problem((name,), "is required"))
            for name in cls.required_in(body)
            if name not in body
        ]
        for name in list(body):
            reason = refused.get(name)
            if reason is None and name not in cls._aliases:
                allowed = ", ".join(cls._aliases) or "none"
                reason = f"unknown field (allowed: {allowed})"
            if reason is not None:
                found.append(((1, order[name]), problem((name,), reason, body.pop(name))))
        result: Any = None
        try:
            result = handler(body)
        except PydanticError as exc:
            for detail in reworded(exc):
                loc = detail["loc"]
                first = loc[0] if loc else None
                if isinstance(first, str) and first in order:
                    rank = (1, order[first])
                else:  # missing: in declaration order, before the fields present
                    decl = cls._aliases.index(first) if first in cls._aliases else 0
                    rank = (0, decl)
                found.append((rank, detail))
        found.sort(key=lambda item: item[0])
        details = [d for _, d in found]
        if cls.at_least_one and not any(n in raw for n in cls.at_least_one):
            names = ", ".join(f"'{n}'" for n in cls.at_least_one)
            details.append(problem((), f"at least one of {names} must be set", data))
        details += cls.rules(raw)
        if details:
            fail(details)
        return result


class OpenObject(BaseModel):
    """Status written by the system (insights): any fields, only the shape is checked."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _object(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        if not isinstance(data, dict) and not isinstance(data, cls):
            raise PydanticCustomError(_KIND, "{reason}", {"reason": "must be an object"})
        return handler(data)


# --- value types: metadata for Annotated[...] -------------------------------------------


def _rephrase(schema: CoreSchema, reason: str) -> CoreSchema:
    """`schema`, whose failures all read `reason`."""

    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except PydanticError:
            raise PydanticCustomError(_KIND, "{reason}", {"reason": reason}) from None

    return core_schema.no_info_wrap_validator_function(wrap, schema)


@dataclass(frozen=True)
class Range:
    """An integer (no bool, no float) within bounds, with Kuma's wording."""

    minimum: int | None = None
    maximum: int | None = None

    def reason(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"must be an integer between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f"must be an integer greater than or equal to {self.minimum}"
        if self.maximum is not None:
            return f"must be an integer less than or equal to {self.maximum}"
        return "must be an integer"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        inner = core_schema.int_schema(ge=self.minimum, le=self.maximum, strict=True)
        return _rephrase(inner, self.reason())


@dataclass(frozen=True)
class Text:
    """A string: optionally non-empty, at most `max_len`, matching `pattern` (whole string)
    and/or passing `predicate`; `message` is what a mismatch reads."""

    pattern: str | None = None
    message: str = ""
    non_empty: bool = False
    max_len: int | None = None
    predicate: Callable[[str], bool] | None = None
    # A value that is not a string reads `message` too (not "must be a string").
    message_for_any: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        compiled = re.compile(self.pattern) if self.pattern else None
        message = self.message or (f"must match {self.pattern}" if self.pattern else "is not valid")

        def check(value: str) -> str:
            if _STORED.get():
                return value
            if self.non_empty and not value:
                raise PydanticCustomError(_KIND, "{reason}", {"reason": "must not be empty"})
            if self.max_len is not None and len(value) > self.max_len:
                reason = f"must be at most {self.max_len} characters"
                raise PydanticCustomError(_KIND, "{reason}", {"reason": reason})
            if (compiled is not None and not compiled.fullmatch(value)) or (
                self.predicate is not None and not self.predicate(value)
            ):
                raise PydanticCustomError(_KIND, "{reason}", {"reason": message})
            return value

        schema = core_schema.no_info_after_validator_function(
            check, core_schema.str_schema(strict=True)
        )
        return _rephrase(schema, message) if self.message_for_any else schema

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.non_empty:
            out["minLength"] = 1
        if self.max_len is not None:
            out["maxLength"] = self.max_len
        if self.message:
            out["description"] = self.message
        return out


@dataclass(frozen=True)
class Choice:
    """On a Literal: "must be one of ..." for anything else, and a reason for each value Kuma
    has but meshfed refuses (`unsupported`)."""

    unsupported: tuple[tuple[str, str], ...] = ()  # (value, reason): hashable metadata

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        values = [str(v) for v in get_args(source)]
        refused = dict(self.unsupported)
        inner = _rephrase(handler(source), one_of_text(values))

        def wrap(value: Any, nxt: Callable[[Any], Any]) -> Any:
            if isinstance(value, str) and value in refused:
                reason = f"{value} {refused[value]}"
                raise PydanticCustomError(_KIND, "{reason}", {"reason": reason})
            return nxt(value)

        return core_schema.no_info_wrap_validator_function(wrap, inner)


_DURATION_EXAMPLES = '"10s", "1m30s" or "500ms"'
_LONG_EXAMPLES = '"30d", "10y", "1h"'
_GO_DURATION = r"^([-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+))$"
_LONG_DURATION = r"^([-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|y))+))$"


def go_duration(value: timedelta) -> str:
    """A timedelta as Kuma writes it, in its largest exact unit: "1h", "15s", "500ms"."""
    micros = round(value.total_seconds() * 1_000_000)
    for unit, size in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000)):
        if micros and micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us" if micros else "0s"


@dataclass(frozen=True)
class GoDuration:
    """Kuma's duration: a Go duration string ("10s", "1m30s", "500ms") read as a timedelta;
    never negative, `positive`: not zero either; `long_units`: also days and years ("30d",
    "10y"), as Kuma's certificate settings take."""

    positive: bool = False
    long_units: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        examples = _LONG_EXAMPLES if self.long_units else _DURATION_EXAMPLES

        def parse(value: Any) -> timedelta:
            ns = (
                parse_duration(value, long_units=self.long_units)
                if isinstance(value, str)
                else None
            )
            reason = None
            if ns is None:
                reason = f"must be a duration such as {examples}"
            elif ns < 0:
                reason = "must not be negative"
            elif self.positive and ns == 0:
                reason = "must be greater than zero"
            elif ns > _MAX_DURATION_NS:
                reason = "is too long: Go durations end at 2562047h (int64 nanoseconds)"
            if reason is not None:
                raise PydanticCustomError(_KIND, "{reason}", {"reason": reason})
            assert ns is not None
            return timedelta(microseconds=ns / 1000)

        return core_schema.no_info_plain_validator_function(
            parse, serialization=core_schema.plain_serializer_function_ser_schema(go_duration)
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": _LONG_DURATION if self.long_units else _GO_DURATION,
            "description": "a duration such as "
            + (_LONG_EXAMPLES if self.long_units else _DURATION_EXAMPLES)
            + (" (greater than zero)" if self.positive else ""),
        }


@dataclass(frozen=True)
class IntOrDecimal:
    """Kuma's IntOrString numbers: an integer, or a decimal written as a string ("99.9")."""

    minimum: Decimal
    maximum: Decimal | None = None
    exclusive_min: bool = False

    def reason(self) -> str:
        low = f"greater than {self.minimum}" if self.exclusive_min else f"at least {self.minimum}"
        high = f" and at most {self.maximum}" if self.maximum is not None else ""
        return f'must be an integer or a decimal string (e.g. "99.5") {low}{high}'

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        def parse(value: Any) -> Decimal:
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
            if number is not None:
                too_low = number <= self.minimum if self.exclusive_min else number < self.minimum
                if not too_low and (self.maximum is None or number <= self.maximum):
                    return number
            raise PydanticCustomError(_KIND, "{reason}", {"reason": self.reason()})

        return core_schema.no_info_plain_validator_function(parse)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}],
            "description": self.reason().removeprefix("must be "),
        }


@dataclass(frozen=True)
class Also:
    """On a list or a dict: `rule` checks the raw value too (locations relative to it), even
    when its items are malformed; its errors follow the items'."""

    rule: Callable[[Any], list[InitErrorDetails]]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        inner = handler(source)
        rule = self.rule
        # the rule sees only the container it was written for (a list where a dict is
        # expected is the type error pydantic reports, not the rule's to read)
        origin = get_origin(source)
        expected: type | tuple[type, ...] = origin if origin in (dict, list) else (dict, list)

        def wrap(value: Any, nxt: Callable[[Any], Any]) -> Any:
            if _STORED.get():
                return nxt(value)
            details: list[InitErrorDetails] = []
            result = None
            try:
                result = nxt(value)
            except PydanticError as exc:
                details += reworded(exc)
            if isinstance(value, expected):
                details += rule(value)
            if details:
                fail(details)
            return result

        return core_schema.no_info_wrap_validator_function(wrap, inner)


@dataclass(frozen=True)
class Keyed:
    """On a dict: errors of a key or its value read `['key']` in the path, key errors say
    "key ...", and at least `min_items` entries."""

    min_items: int = 0

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        inner = handler(source)
        minimum = self.min_items

        def wrap(value: Any, nxt: Callable[[Any], Any]) -> Any:
            if _STORED.get():
                return nxt(value)
            if not isinstance(value, dict):
                reason = "must be a map of keys to values"
                raise PydanticCustomError(_KIND, "{reason}", {"reason": reason})
            details: list[InitErrorDetails] = []
            if len(value) < minimum:
                details.append(problem((), f"must have at least {minimum} entry", value))
            try:
                result = nxt(value)
            except PydanticError as exc:
                for e in exc.errors():
                    loc = e["loc"]
                    if not loc:
                        details.append(problem((), _reason(e), e.get("input")))
                        continue
                    head, rest = map_key(str(loc[0])), loc[1:]
                    if rest[:1] == ("[key]",):
                        details.append(problem((head,), "key " + _reason(e), e.get("input")))
                    else:
                        details.append(problem((head, *rest), _reason(e), e.get("input")))
            if details:
                fail(details)
            return result

        return core_schema.no_info_wrap_validator_function(wrap, inner)


def by_type(
    data: dict[str, Any], type_field: str, sub_fields: Mapping[str, str], *, required: bool
) -> list[InitErrorDetails]:
    """Ties a type-specific block to its type: `ringHash` only with `type: RingHash`."""
    chosen = data.get(type_field)
    out: list[InitErrorDetails] = []
    for type_value, field in sub_fields.items():
        present = field in data
        if present and chosen != type_value:
            out.append(problem((field,), f"can only be set when {type_field} is {type_value}"))
        elif required and not present and chosen == type_value:
            out.append(problem((field,), f"is required when {type_field} is {type_value}"))
    return out
