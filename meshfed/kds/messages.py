"""KDS messages as plain dataclasses, so the sync engine never touches protobuf or gRPC.

They mirror proto/kds.proto one to one (meshfed/kds/convert.py maps between the two). A
resource's body travels as JSON bytes: the sender encodes it once, the receiver decodes and
validates it, and a body that does not decode is NACKed like any other invalid resource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from meshfed.resources.model import Key, Meta, Resource, content_hash

DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # Kuma's default, both ways


class KdsProtocolError(Exception):
    """The peer sent something the protocol does not allow; the stream carries on without it."""


@dataclass(frozen=True, slots=True)
class WireResource:
    name: str
    mesh: str
    version: str  # content hash: equal versions mean equal labels and body
    labels: dict[str, str] = field(default_factory=dict)
    creation_time: str = ""
    modification_time: str = ""
    spec: bytes = b"{}"  # the body as a JSON object

    @property
    def key(self) -> Key:
        return Key(self.mesh, self.name)

    def encoded_size(self) -> int:
        """Bytes this takes as a KdsResource message (an upper bound, exact in practice)."""
        size = _field(self.name) + _field(self.mesh) + _field(self.version)
        for k, v in self.labels.items():
            size += _nested(_field_always(k) + _field_always(v))
        size += _field(self.creation_time) + _field(self.modification_time) + _bytes(self.spec)
        return size


@dataclass(frozen=True, slots=True)
class SyncResponse:
    type: str
    resources: list[WireResource] = field(default_factory=list)
    removed: list[Key] = field(default_factory=list)
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class FailedResource:
    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    message: str
    failed: list[FailedResource] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    type: str
    response_nonce: str = ""  # "" = (re)subscribe
    error_detail: ErrorDetail | None = None  # set on a NACK
    initial_resource_versions: dict[Key, str] = field(default_factory=dict)

    @property
    def is_subscribe(self) -> bool:
        return not self.response_nonce

    @property
    def is_nack(self) -> bool:
        return self.error_detail is not None


def to_wire(res: Resource) -> WireResource:
    """The form a resource is sent in; callers can cache it and share it between streams."""
    text = json.dumps(res.spec, sort_keys=True, separators=(",", ":"))
    return WireResource(
        name=res.meta.name,
        mesh=res.meta.mesh,
        version=content_hash(res.meta.labels, text),
        labels=dict(res.meta.labels),
        creation_time=res.meta.creation_time,
        modification_time=res.meta.modification_time,
        spec=text.encode(),
    )


def from_wire(type_name: str, wire: WireResource) -> Resource:
    """Decodes the body; raises ValueError with a reason fit for a NACK when it is not valid."""
    try:
        body = json.loads(wire.spec)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"spec is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("spec must be a JSON object")
    meta = Meta(
        name=wire.name,
        mesh=wire.mesh,
        labels=dict(wire.labels),
        creation_time=wire.creation_time,
        modification_time=wire.modification_time,
    )
    return Resource(type=type_name, meta=meta, spec=body)


def response_overhead(type_name: str) -> int:
    """Bytes of a SyncResponse besides its resources and removes (type and a nonce)."""
    return _field(type_name) + _field("x" * 24)


def removed_size(key: Key) -> int:
    """Bytes one removed entry takes in a SyncResponse."""
    return _nested(_field(key.name) + _field(key.mesh))


def upsert_size(wire: WireResource) -> int:
    """Bytes one upserted resource takes in a SyncResponse."""
    return _nested(wire.encoded_size())


# Protobuf wire sizes: field numbers here are all < 16, so a tag is one byte.
def _varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _bytes(data: bytes) -> int:
    return 1 + _varint_len(len(data)) + len(data) if data else 0


def _field(text: str) -> int:
    return _bytes(text.encode())


def _field_always(text: str) -> int:
    # Map entries may carry empty keys/values explicitly; count them as present.
    n = len(text.encode())
    return 1 + _varint_len(n) + n


def _nested(inner: int) -> int:
    return 1 + _varint_len(inner) + inner
