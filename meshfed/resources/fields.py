"""Kuma's tag names and the two readers of loosely typed JSON that every layer uses, in a
module that imports nothing: the sidecar reads policies' parts with them without loading the
resource schema (`meshfed.resources.types`, whose package imports every type; decision 187).
`meshfed.resources.types.common` re-exports them."""

from __future__ import annotations

from typing import Any

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"


def dig(obj: Any, *path: str) -> Any:
    """Walks nested dicts; None as soon as a step is missing or not a dict."""
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
