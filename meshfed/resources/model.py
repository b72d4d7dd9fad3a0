"""The one resource abstraction every module speaks: REST, store, KDS and CLI.

A resource is `type` + meta (name, mesh, labels, times, store version) + a body. For the
`Mesh*` policies the body is what Kuma puts under `spec`; for Mesh, Dataplane, ZoneIngress and
the other "classic" types Kuma puts the fields at the top level. `Resource.spec` holds the body
either way; the descriptor's `spec_wrapped` decides how it is rendered.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from meshfed.resources.envelope import LABEL_DISPLAY_NAME as LABEL_DISPLAY_NAME

# Labels set by the system (Kuma's names, so users' selectors keep working).
LABEL_ORIGIN = "kuma.io/origin"
LABEL_ZONE = "kuma.io/zone"
ORIGIN_GLOBAL = "global"
ORIGIN_ZONE = "zone"

# Meta keys that appear at the top of a resource's JSON form.
META_KEYS = ("type", "mesh", "name", "creationTime", "modificationTime", "labels")


def now_rfc3339() -> str:
    """UTC timestamp in the form Kuma prints (RFC 3339, 'Z' suffix)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Key(NamedTuple):
    """Identifies a resource within one type: KDS syncs by it (what delta xDS calls the
    resource name), and store mirrors index by it."""

    mesh: str
    name: str

    def __str__(self) -> str:
        return f"{self.name!r} in mesh {self.mesh!r}" if self.mesh else repr(self.name)


@dataclass(slots=True)
class Meta:
    name: str
    mesh: str = ""  # "" for global-scoped types (Mesh, Zone, ZoneIngress, ...)
    labels: dict[str, str] = field(default_factory=dict)
    creation_time: str = ""
    modification_time: str = ""
    # Opaque store version (a revision number as a string); "" before the first write.
    version: str = ""


@dataclass(slots=True)
class Resource:
    type: str
    meta: Meta
    spec: dict[str, Any] = field(default_factory=dict)
    # The body as its pydantic model, made on the first typed read (meshfed.resources.typed)
    # and kept with the `spec` it was read from: (spec, model class, object or None if the
    # body does not fit the model). A cache, not part of the value: not compared, not copied.
    typed_cache: tuple[Any, Any, Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def mesh(self) -> str:
        return self.meta.mesh

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.type, self.meta.mesh, self.meta.name)

    def clone(self) -> Resource:
        return Resource(
            type=self.type,
            meta=replace(self.meta, labels=dict(self.meta.labels)),
            spec=copy.deepcopy(self.spec),
        )

    def content_hash(self) -> str:
        """Hash of what the user controls (labels and body): KDS's per-resource version."""
        return content_hash(self.meta.labels, _canonical(self.spec))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def content_hash(labels: dict[str, str], spec_json: str) -> str:
    """`Resource.content_hash` from the labels and the body already encoded canonically
    (sorted keys, no spaces): KDS encodes the body once for both the wire and the version.
    The payload is the canonical JSON of {"labels": ..., "spec": ...}, byte for byte."""
    payload = f'{{"labels":{_canonical(labels)},"spec":{spec_json}}}'
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
