"""Protobuf's wire format (https://protobuf.dev/programming-guides/encoding/) for the OTLP
messages the exporters send per request: spans and access-log records (decision 177).

Written straight from the exporters' records, as bytes: building the opentelemetry-proto
messages cost ~60 µs of the exporter's thread per span (a KeyValue and an AnyValue object per
tag, under the GIL the data path needs) and a batch of message objects in the heap; the
parts every span of a listener shares are encoded once. Fields are written in field-number
order, as protobuf's own encoder writes them, so a message is byte for byte what the
opentelemetry-proto messages would serialize (tests/unit/mesh_dp/otlp/test_wire.py decodes
them with those messages and compares). Pure; imports no protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from struct import Struct
from typing import Any, Final

SCOPE: Final = "meshfed.mesh-dp"  # the InstrumentationScope of the access logs and metrics

_SMALL: Final = [bytes([n]) for n in range(128)]
_FIXED64: Final = Struct("<Q")
_DOUBLE: Final = Struct("<d")
_U64: Final = (1 << 64) - 1

# tags of the fields written here: (number << 3) | wire type (0 varint, 1 fixed64, 2 bytes)
KEY: Final = b"\x0a"  # KeyValue.key = 1
VALUE: Final = b"\x12"  # KeyValue.value = 2
STRING: Final = b"\x0a"  # AnyValue.string_value = 1


def varint(n: int) -> bytes:
    """`n` (0 <= n < 2**64) as a base-128 varint."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def fixed64(number: int, n: int) -> bytes:
    return varint(number << 3 | 1) + _FIXED64.pack(n)


def utf8(text: bytes) -> bytes:
    """A header value (bytes read as latin-1, as the sidecar reads heads) as UTF-8 text."""
    return text if text.isascii() else text.decode("latin-1").encode()


def string_kv(key: bytes, value: bytes) -> bytes:
    """A KeyValue whose value is a string: `key` and `value` UTF-8."""
    any_value = STRING + varint(len(value)) + value
    name = KEY + varint(len(key)) + key if key else b""  # proto3: an empty key is not sent
    return name + VALUE + varint(len(any_value)) + any_value


def _key(key: str) -> bytes:
    """KeyValue.key (not sent when empty, as protobuf leaves out a proto3 default)."""
    return field(1, key.encode()) if key else b""


def string_kvs(number: int, pairs: Iterable[tuple[str, str]]) -> bytes:
    """Repeated KeyValue field `number` of string attributes."""
    return b"".join(field(number, string_kv(k.encode(), v.encode())) for k, v in pairs)


def any_value(value: tuple[str, Any]) -> bytes:
    """An AnyValue's fields from a rendered value (mesh_dp/otlp/records.py `Value`): one of
    its oneof (set even when empty, as protobuf sends a oneof), nothing for `empty`."""
    kind, raw = value
    if kind == "string":
        return field(1, raw.encode())
    if kind == "bool":
        return b"\x10" + _SMALL[1 if raw else 0]
    if kind == "int":
        return b"\x18" + varint(raw & _U64)  # int64: two's complement
    if kind == "double":
        return b"\x21" + _DOUBLE.pack(raw)
    if kind == "bytes":
        return field(7, raw)
    if kind == "array":  # ArrayValue.values = 1
        return field(5, b"".join(field(1, any_value(v)) for v in raw))
    if kind == "kvlist":  # KeyValueList.values = 1 of KeyValue
        pairs = (field(1, _key(k) + field(2, any_value(v))) for k, v in raw)
        return field(6, b"".join(pairs))
    return b""


class Batch:
    """The items (`spans`, `log_records` = 2 of Scope{Spans,Logs}) of one export request,
    each appended to one buffer as it is encoded: an exporter holds one growing buffer, not a
    small object per request in the heap the data path allocates from."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.count = 0

    def add(self, message: bytes) -> int:
        """Appends one encoded item; its size."""
        self.buf += b"\x12" + varint(len(message)) + message
        self.count += 1
        return len(message)

    def request(self, resource: bytes, scope: bytes) -> bytes:
        """Export{Trace,Logs}ServiceRequest with one resource and one scope (resource_* = 1 {
        resource = 1, scope_* = 2 { scope = 1, items }}); the batch is empty after."""
        body = field(1, resource + field(2, scope + self.buf))
        self.buf, self.count = bytearray(), 0
        return body


def export_request(resource: bytes, scope: bytes, items: Sequence[bytes]) -> bytes:
    """One request of these items (Batch.request)."""
    batch = Batch()
    for i in items:
        batch.add(i)
    return batch.request(resource, scope)


def resource(attributes: Iterable[tuple[str, str]]) -> bytes:
    """A Resource (attributes = 1) as the field `resource = 1` of its Resource{Spans,Logs}."""
    return field(1, string_kvs(1, attributes))


def scope(name: str) -> bytes:
    """An InstrumentationScope (name = 1) as the field `scope = 1` of its Scope{Spans,Logs}."""
    return field(1, field(1, name.encode()))


def log_record(start_ns: int, body: tuple[str, Any], attributes: bytes, observed: bytes) -> bytes:
    """A LogRecord: time_unix_nano = 1, body = 5 (absent for an `empty` value), attributes
    = 6 (already encoded), observed_time_unix_nano = 11 (`observed`, encoded once a batch)."""
    value = any_value(body)
    return b"".join(
        (
            b"\x09" + _FIXED64.pack(start_ns) if start_ns else b"",
            b"\x2a" + varint(len(value)) + value if body[0] != "empty" else b"",
            attributes,
            observed,
        )
    )


def observed(now_ns: int) -> bytes:
    """A LogRecord's observed_time_unix_nano = 11 (fixed64), for `log_record`."""
    return b"\x59" + _FIXED64.pack(now_ns) if now_ns else b""


def parts_record(parts: Any, observed_at: bytes) -> bytes:
    """One rendered `LogParts` (start_ns, body, attributes) as a LogRecord."""
    return log_record(parts.start_ns, parts.body, string_kvs(6, parts.attributes), observed_at)


def logs_request(
    resource_attributes: Iterable[tuple[str, str]], records: Iterable[Any], now_ns: int
) -> bytes:
    """One ExportLogsServiceRequest: one resource, one scope, the records (`LogParts`:
    start_ns, body, attributes) in order."""
    at = observed(now_ns)
    items = [parts_record(r, at) for r in records]
    return export_request(resource(resource_attributes), scope(SCOPE), items)
