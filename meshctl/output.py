"""How results are shown: aligned tables, YAML/JSON exactly as the API returned them, errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from meshctl.errors import CliError
from meshfed.resources.descriptors import Scope, TypeDescriptor
from meshfed.resources.model import META_KEYS, Meta, Resource

OUTPUT_FORMATS = ("table", "yaml", "json")
_GAP = "   "
# Go (Kuma) prints nanoseconds; datetime takes at most microseconds.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")

Cell = Callable[[dict[str, Any]], str]


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def dump_yaml(value: Any) -> str:
    """Block-style YAML in the API's key order, so `get -o yaml` reads like the applied file."""
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces; no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append(_GAP.join(cells).rstrip())
    return "\n".join(lines) + "\n"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_age(created: Any, now: datetime) -> str:
    """kubectl-style age of a creationTime: 45s, 12m, 5h, 3d; '-' when unknown."""
    start = parse_time(created)
    if start is None:
        return "-"
    seconds = max(0, int((now - start).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def to_resource(item: dict[str, Any], desc: TypeDescriptor) -> Resource:
    """A Resource from the API's JSON without validating it: tables must show odd data too."""
    labels = item.get("labels")
    if desc.spec_wrapped:
        spec = item.get("spec")
        body = spec if isinstance(spec, dict) else {}
    else:
        body = {k: v for k, v in item.items() if k not in META_KEYS}
    meta = Meta(
        name=str(item.get("name", "")),
        mesh=str(item.get("mesh", "")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        creation_time=str(item.get("creationTime", "")),
        modification_time=str(item.get("modificationTime", "")),
    )
    return Resource(type=str(item.get("type", desc.name)), meta=meta, spec=body)


def table_columns(desc: TypeDescriptor, now: datetime) -> list[tuple[str, Cell]]:
    """MESH (mesh-scoped types), NAME, the descriptor's own columns, AGE; no header twice."""
    columns: list[tuple[str, Cell]] = []
    own = [(header.upper(), _descriptor_cell(fn, desc)) for header, fn in desc.columns]
    own_headers = {header for header, _ in own}
    if desc.scope is Scope.MESH and "MESH" not in own_headers:
        columns.append(("MESH", lambda item: str(item.get("mesh", ""))))
    if "NAME" not in own_headers:
        columns.append(("NAME", lambda item: str(item.get("name", ""))))
    columns += own
    if "AGE" not in own_headers:
        columns.append(("AGE", lambda item: format_age(item.get("creationTime"), now)))
    return columns


def _descriptor_cell(fn: Callable[[Resource], str], desc: TypeDescriptor) -> Cell:
    def cell(item: dict[str, Any]) -> str:
        try:
            return str(fn(to_resource(item, desc)))
        except Exception:  # a malformed stored resource must not hide the rest of the table
            return "?"

    return cell


def resource_table(desc: TypeDescriptor, items: Sequence[dict[str, Any]], now: datetime) -> str:
    columns = table_columns(desc, now)
    rows = [[fn(item) for _, fn in columns] for item in items]
    return render_table([header for header, _ in columns], rows)


def error_lines(error: CliError) -> list[str]:
    """`Error: <message>` and one indented line per detail (e.g. `  spec.x: reason`)."""
    return [f"Error: {error.message}", *(f"  {d}" for d in error.details)]
