"""Kuma's way of combining the `default` blocks of several policy entries: JSON merge patch.

Entries are applied in priority order, least specific first (RFC 7386): objects merge key by
key, anything else (numbers, strings, lists) is replaced by the later value, and `null`
removes a key. So the most specific entry wins field by field, not as a whole.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied; neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_confs(confs: Iterable[Any]) -> dict[str, Any]:
    """Folds `default` blocks, least specific first; an empty dict when there are none."""
    merged: dict[str, Any] = {}
    for conf in confs:
        out = merge_patch(merged, conf)
        merged = out if isinstance(out, dict) else {}
    return merged
