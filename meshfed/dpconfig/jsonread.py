"""Strict, path-reporting readers for config JSON a proxy receives.

A proxy must never crash on a config it cannot read: every problem becomes one
ConfigFormatError naming the field (`outbounds[2].endpoints[0].port: must be an integer in
1..65535`). Unknown fields are ignored, so an older proxy keeps working with a newer
control plane that adds fields.
"""

from __future__ import annotations

import math
from typing import Any


class ConfigFormatError(ValueError):
    """A config (or part of one) that does not have the documented shape."""


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class Obj:
    """A JSON object being read, with the path used in error messages."""

    __slots__ = ("data", "path")

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise ConfigFormatError(f"{path or 'config'}: must be an object")
        self.data: dict[str, Any] = data
        self.path = path

    def _value(self, name: str, default: Any) -> Any:
        value = self.data.get(name)
        if value is None:
            if default is _REQUIRED:
                raise ConfigFormatError(f"{_at(self.path, name)}: is required")
            return default
        return value

    def _fail(self, name: str, what: str) -> ConfigFormatError:
        return ConfigFormatError(f"{_at(self.path, name)}: must be {what}")

    def text(self, name: str, default: str | None = None) -> str:
        value = self._value(name, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise self._fail(name, "a string")
        return value

    def opt_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, str):
            raise self._fail(name, "a string")
        return value

    def integer(self, name: str, lo: int, hi: int, default: int | None = None) -> int:
        value = self._value(name, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self._fail(name, f"an integer in {lo}..{hi}")
        return value

    def opt_integer(self, name: str, lo: int, hi: int) -> int | None:
        return None if self.data.get(name) is None else self.integer(name, lo, hi)

    def number(self, name: str, default: float | None = None) -> float:
        value = self._value(name, _REQUIRED if default is None else default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < math.inf
        ):
            raise self._fail(name, "a finite non-negative number")
        return float(value)

    def flag(self, name: str, default: bool | None = None) -> bool:
        value = self._value(name, _REQUIRED if default is None else default)
        if not isinstance(value, bool):
            raise self._fail(name, "true or false")
        return value

    def obj(self, name: str) -> Obj:
        return Obj(self._value(name, _REQUIRED), _at(self.path, name))

    def opt_obj(self, name: str) -> Obj | None:
        value = self.data.get(name)
        return None if value is None else Obj(value, _at(self.path, name))

    def objs(self, name: str) -> list[Obj]:
        """A list of objects; absent means empty."""
        value = self._value(name, [])
        if not isinstance(value, list):
            raise self._fail(name, "a list")
        return [Obj(item, f"{_at(self.path, name)}[{i}]") for i, item in enumerate(value)]

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._value(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(name, "a list of strings")
        return tuple(value)

    def text_map(self, name: str) -> dict[str, str]:
        value = self._value(name, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._fail(name, "an object of strings")
        return dict(value)


class _Required:
    pass


_REQUIRED: Any = _Required()
