"""Value rules shared by the models and by code that reads values the models accepted.

Pure Python, no pydantic: the proxies import it (decision 71). Go durations, host names,
addresses, base64.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from decimal import Decimal

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


# The common case, whole numbers ("10s", "1m30s", "500ms"), read without Decimal.
_WHOLE = re.compile(r"(?:\d+(?:ns|us|µs|μs|ms|s|m|h))+")
_WHOLE_PART = re.compile(r"(\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str, *, long_units: bool = False) -> int | None:
    """Go's time.ParseDuration: "1h30m", "500ms", "-1.5s", "0". Nanoseconds, or None if bad."""
    if _WHOLE.fullmatch(text):
        return sum(int(n) * _GO_UNITS[u] for n, u in _WHOLE_PART.findall(text))
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
