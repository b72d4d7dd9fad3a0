"""Typed reads of a resource's body: the body as its pydantic model (Kuma's defaults filled
in), parsed once per Resource object and kept on it, so readers take attributes instead of
walking dicts and repeating defaults.

The store cache hands every reader the same read-only Resource objects (meshfed/store/cache.py),
so a Dataplane read by the catalog, the config builder and the dataplane server is parsed
once per stored version, not once per read. The cache is tied to the `spec` object it was
made from: a Resource whose `spec` is replaced is parsed again (bodies are never changed in
place once read: a changed resource is a clone).

Stored bodies were validated where they entered (REST, the dataplane server, KDS), so they
are read with `read_stored` (models/base.py): pydantic's structure and conversions (nested
models, strict types, unknown fields, defaults, durations as timedeltas), without meshfed's
own checks in Python (cross-field rules, patterns, tag and address rules), which cost two
thirds of a full validation. Not `model_construct`: it builds no nested models
(`networking.inbound[0]` would stay a dict) and converts nothing (durations stay strings), so
typed access would break on exactly the fields the builders read. A body whose structure no
longer fits the model (written by an older version) reads as None, and each reader says
what None means for it.

Pydantic is imported by the caller (its model class), never by this module: the proxies
import the resource registry, not these reads.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from meshfed.resources.model import Resource

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger("meshfed.resources.typed")

M = TypeVar("M", bound="BaseModel")


def spec_as(resource: Resource, model: type[M]) -> M | None:
    """`resource.spec` as `model`, or None if it does not fit (logged once per Resource)."""
    cached = resource.typed_cache
    if cached is not None and cached[0] is resource.spec and cached[1] is model:
        value: M | None = cached[2]
        return value
    from meshfed.resources.models.base import read_stored  # pydantic: loaded with `model`

    try:
        value = read_stored(model, resource.spec)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        log.warning(
            "%s %r does not fit its model, left out: %s",
            resource.type,
            resource.meta.name,
            str(exc).splitlines()[0],
        )
        value = None
    resource.typed_cache = (resource.spec, model, value)
    return value


def unfit_reason(resource: Resource, model: type[BaseModel]) -> str:
    """Why `resource.spec` does not fit `model` ("path: reason; ..."), for a reader's error
    message once `spec_as` said None; "" if it fits."""
    from pydantic import ValidationError as PydanticError

    from meshfed.resources.models.base import field_errors, read_stored

    try:
        read_stored(model, resource.spec)
    except PydanticError as exc:
        return "; ".join(f"{e.field}: {e.reason}" for e in field_errors(exc, ""))
    return ""
