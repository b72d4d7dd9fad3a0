"""KDS options shared by global-cp and zone-cp, and the value parsers they need.

Declared once here so both programs spell, default and document them the same way.
"""

from __future__ import annotations

import re
from typing import Any

from meshfed.config import Address, Option, parse_address, parse_size
from meshfed.resources.codec import check_name

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0}
GRPC_SCHEME = "grpc://"


def parse_duration(value: Any) -> float:
    """Seconds from Go-style text (500ms, 1s, 2m) or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 1s or 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError("expected a duration such as 500ms, 1s or 2m")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def parse_zone_name(value: Any) -> str:
    """A zone name: it becomes a resource name and a label value, so the same rules apply."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ValueError("a zone name is required, e.g. --zone zone-1")
    problems = check_name(text, "zone")
    if problems:
        raise ValueError(problems[0].reason)
    if len(text) > 63:
        raise ValueError("must be at most 63 characters (it is used as a label value)")
    return text


def parse_grpc_target(value: Any) -> Address | None:
    """`grpc://HOST:PORT` (the scheme may be omitted); empty means none (standalone)."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    if text.startswith(GRPC_SCHEME):
        text = text[len(GRPC_SCHEME) :]
    elif "://" in text:
        raise ValueError("expected grpc://HOST:PORT (TLS comes with zone authentication)")
    address = parse_address(text)
    if address.port == 0:
        raise ValueError("the port must not be 0 when dialing")
    return address


def grpc_url(address: Address) -> str:
    return GRPC_SCHEME + str(address)


MAX_MESSAGE_BYTES = Option(
    "kds-max-message-bytes",
    parse_size,
    "10MiB",
    "Largest KDS message sent or received (as Kuma: 10 MiB); a resource over it is reported "
    "with its type and name and not synced",
    metavar="SIZE",
)
