"""`--log-format json`: the formatter alone (meshfed.config.JsonLogFormatter)."""

from __future__ import annotations

import json
import logging
import sys

from meshfed.config import JsonLogFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("meshfed.kds", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_line_is_one_object_with_the_fixed_keys_and_the_fields() -> None:
    line = JsonLogFormatter().format(
        _record("zone %s: rejected %s", "z1", "MeshTimeout", zone="z1", type="MeshTimeout")
    )
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "warning"
    assert out["logger"] == "meshfed.kds"
    assert out["message"] == "zone z1: rejected MeshTimeout"
    assert out["zone"] == "z1" and out["type"] == "MeshTimeout"
    assert out["time"].endswith("Z") and "T" in out["time"]
    assert "args" not in out and "levelno" not in out  # LogRecord's own attributes stay out


def test_fixed_keys_win_and_odd_values_become_text() -> None:
    out = json.loads(JsonLogFormatter().format(_record("m", level="x", when=object)))
    assert out["level"] == "warning"
    assert out["when"] == str(object)


def test_an_exception_is_one_field_and_the_line_stays_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: bad\nthing" in json.loads(line)["exception"]
