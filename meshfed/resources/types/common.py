"""Pieces shared by several types: Kuma's tag rules, ports, addresses and table columns."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from meshfed.resources.descriptors import Column
from meshfed.resources.errors import FieldError
from meshfed.resources.model import Resource
from meshfed.resources.schema import (
    Check,
    Custom,
    Int,
    MapOf,
    Str,
    is_address,
    join,
    key,
)

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
NOT_SUPPORTED = "is not supported by meshfed"

PORT = Int(1, 65535)
ADDRESS = Str(predicate=is_address, message="must be an IP address or a hostname")


def _dialable(value: Any, path: str) -> list[FieldError]:
    errors = ADDRESS.check(value, path)
    if errors or not isinstance(value, str):
        return errors
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return []  # a host name
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        kind = "an unspecified" if ip.is_unspecified else "a multicast or broadcast"
        return [
            FieldError(
                path,
                f"must be an address other proxies can dial, not {kind} address ({value})",
            )
        ]
    return []


# An address other proxies connect to (a Dataplane's): 0.0.0.0, ::, multicast are refused.
DIALABLE_ADDRESS = Custom(_dialable)
# A reference to another resource by name (mesh, service): Kuma's name character set.
NAME = Str(
    pattern=r"[0-9a-z._-]+",
    message="must consist of lower case alphanumeric characters, '-', '.' and '_'",
)

# Kuma's tag character sets: keys may hold '/', ':'; selector values may also be '*' or hold '/'.
_TAG_KEY = Str(
    pattern=r"[a-zA-Z0-9.\-_:/]+",
    message="must be non-empty and consist of alphanumeric characters, '.', '-', '_', ':', '/'",
)
_TAG_VALUE = Str(
    pattern=r"[a-zA-Z0-9.\-_:]+",
    message="must be non-empty and consist of alphanumeric characters, '.', '-', '_', ':'",
)
_SELECTOR_VALUE = Str(
    pattern=r"[a-zA-Z0-9.\-_:/]+|\*",
    message="must be '*' or consist of alphanumeric characters, '.', '-', '_', ':', '/'",
)

TAGS = MapOf(_TAG_VALUE, keys=_TAG_KEY)
SELECTOR_TAGS = MapOf(_SELECTOR_VALUE, keys=_TAG_KEY)
LABELS = MapOf(Str(), keys=Str(non_empty=True))

_PROTOCOLS = ("tcp", "http", "http2", "grpc")

# A service name becomes a key of the zone's VirtualIPs (at most 253 characters) and DNS names
# (`<service>.mesh`, and Kuma's variant with each `_` read as `.`): the same limits hold here,
# so one long name is refused at the edge instead of making the whole VirtualIPs of its zone
# invalid at the global.
MAX_SERVICE = 253
MAX_SERVICE_PART = 63
_SERVICE_PARTS = re.compile(r"[._]")


def service_name_problem(service: str) -> str | None:
    """Why `service` cannot be a VirtualIPs key and a DNS name, or None."""
    if len(service) > MAX_SERVICE:
        return (
            f"must be at most {MAX_SERVICE} characters (it names the service's VIP and DNS "
            f"name); this one has {len(service)}"
        )
    parts = _SERVICE_PARTS.split(service)
    if any(not part for part in parts):
        return "must not start or end with '.' or '_', nor have two of them in a row (DNS name)"
    long_part = next((part for part in parts if len(part) > MAX_SERVICE_PART), None)
    if long_part is not None:
        return (
            f"every part between '.' or '_' must be at most {MAX_SERVICE_PART} characters "
            f"(a DNS label); {long_part[:20]}... has {len(long_part)}"
        )
    return None


def _service_tags(value: Any, path: str) -> list[FieldError]:
    errors = TAGS.check(value, path)
    if not isinstance(value, dict):
        return errors
    if SERVICE_TAG not in value:
        errors.append(FieldError(path, f"must contain the {SERVICE_TAG!r} tag"))
    service = value.get(SERVICE_TAG)
    if isinstance(service, str) and _TAG_VALUE.check(service, "") == []:
        problem = service_name_problem(service)
        if problem is not None:
            errors.append(FieldError(key(path, SERVICE_TAG), problem))
    proto = value.get(PROTOCOL_TAG)
    if isinstance(proto, str) and proto not in _PROTOCOLS:
        errors.append(
            FieldError(key(path, PROTOCOL_TAG), "must be one of " + ", ".join(_PROTOCOLS))
        )
    return errors


# Tags of a dataplane inbound/outbound or an advertised service: kuma.io/service is mandatory.
SERVICE_TAGS = Custom(_service_tags)


def advertised_pair(address_field: str, port_field: str) -> Check:
    """Kuma's rule: an advertised address and port are set together or not at all."""

    def check(obj: dict[str, Any], path: str) -> list[FieldError]:
        has_addr = obj.get(address_field) is not None
        has_port = obj.get(port_field) is not None
        if has_addr == has_port:
            return []
        missing = port_field if has_addr else address_field
        present = address_field if has_addr else port_field
        return [FieldError(join(path, missing), f"is required when {present} is set")]

    return check


# --- table columns -----------------------------------------------------------------------


def dig(obj: Any, *path: str) -> Any:
    """Walks nested dicts; None as soon as a step is missing or not a dict."""
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def column(title: str, fn: Callable[[Resource], str]) -> Column:
    """A column whose extractor never raises: a table must render even odd or foreign data."""

    def safe(res: Resource) -> str:
        try:
            return fn(res)
        except Exception:  # odd data renders as "-" rather than breaking a whole table
            return "-"

    return (title, safe)


def format_age(created: str, now: datetime | None = None) -> str:
    """kubectl-style age: 45s, 12m, 5h, 3d; "-" if the time is missing or unreadable."""
    if not created:
        return "-"
    try:
        then = datetime.fromisoformat(created)
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


NAME_COLUMN = column("NAME", lambda r: r.meta.name)
MESH_COLUMN = column("MESH", lambda r: r.meta.mesh or "-")
AGE_COLUMN = column("AGE", lambda r: format_age(r.meta.creation_time))
