"""Pieces shared by several types, pydantic-free: Kuma's tag names, the service-name rule and
table columns (their value types are in meshfed/resources/models/common.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from meshfed.resources.descriptors import Column
from meshfed.resources.fields import PROTOCOL_TAG as PROTOCOL_TAG
from meshfed.resources.fields import SERVICE_TAG as SERVICE_TAG
from meshfed.resources.fields import as_list as as_list
from meshfed.resources.fields import dig as dig
from meshfed.resources.model import Resource

NOT_SUPPORTED = "is not supported by meshfed"

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


# --- table columns -----------------------------------------------------------------------


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
