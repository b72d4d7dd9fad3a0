"""OpenTelemetry export of spans (OTLP, https://opentelemetry.io/docs/specs/otlp/): one
ExportTraceServiceRequest per batch, written straight from the requests' records in
protobuf's wire format (mesh_dp/otlp/wire.py, decision 177): no Span object, tag dict or
protobuf message is made per request, and what every span of a listener shares (its kind,
the node, zone, cluster and mesh tags, the policy's literal tags) is encoded once.
mesh_dp/otlp/transport.py sends it as MeshAccessLog's and MeshMetric's OTLP: OTLP/HTTP to
`<path>/v1/traces` when the endpoint has a scheme, else OTLP/gRPC to Kuma's `host:port`
form (decisions 141, 142).

The tags and their order are span.py's `tags_of` (tests compare the bytes with the
opentelemetry-proto messages built from it); a policy tag whose name is one of Envoy's
standard tags (or repeats another) replaces it in place there, which these spans do by
taking `tags_of` for that listener.
"""

from __future__ import annotations

from binascii import unhexlify
from collections.abc import Sequence
from struct import Struct
from typing import Final

from mesh_dp.http.accesslog import Record
from mesh_dp.http.parse import RequestHead
from mesh_dp.otlp.wire import Batch, field, resource, scope, string_kv, utf8, varint
from mesh_dp.tracing.span import Listener, Request, Span, encode_all, name_of, tags_of
from meshfed.dpconfig.tracing import Tracing

Item = Span | tuple[Listener, Record, float]  # a Span, or tracer.py's Pending

_TIMES: Final = Struct("<BQBQ")  # start_time_unix_nano = 7, end_time_unix_nano = 8 (fixed64)
_ERROR: Final = b"\x7a\x02\x18\x02"  # status = 15 { code = 3: STATUS_CODE_ERROR }
_UNSET: Final = b"\x7a\x00"  # status = 15 {} (set, as the messages send it)
_KIND: Final = {True: b"\x30\x02", False: b"\x30\x03"}  # kind = 6: SERVER, CLIENT
_STANDARD: Final = frozenset(
    (
        "component",
        "node_id",
        "zone",
        "upstream_cluster",
        "http.status_code",
        "response_flags",
        "upstream_address",
        "http.method",
        "http.url",
        "http.protocol",
        "user_agent",
        "guid:x-request-id",
        "error",
        "meshfed.error",
        "kuma.mesh",
        "kuma.zone",
    )
)


def _attr(key: bytes, value: bytes) -> bytes:
    """A span's `attributes = 9` field: one string KeyValue."""
    kv = string_kv(key, value)
    return b"\x4a" + varint(len(kv)) + kv


def _const(key: str, value: str) -> bytes:
    return _attr(key.encode(), value.encode())


class _Shared:
    """What the spans of one listener have in common, encoded; `tags`: the policy's tags in
    order, each encoded (a literal) or (key, header, encoded default or b"")."""

    __slots__ = ("first", "flags", "general", "head_names", "kind", "last", "tags")

    def __init__(self, lst: Listener) -> None:
        names = [t.name for t in lst.tags]
        # tags_of's dict lets a policy tag replace a standard one in place: taken as it is
        self.general = bool(_STANDARD.intersection(names)) or len(set(names)) != len(names)
        # a server span's name (field 5, `ingress`) then the kind (6); a client's name varies
        self.kind = (b"\x2a\x07ingress" if lst.server else b"") + _KIND[lst.server]
        self.first = b"".join(
            _const(k, v)
            for k, v in (
                ("component", "proxy"),
                ("node_id", lst.node_id),
                ("zone", lst.zone),
                ("upstream_cluster", lst.cluster),
            )
        )
        self.flags = _const("response_flags", "-")
        self.last = _const("kuma.mesh", lst.mesh) + _const("kuma.zone", lst.zone)
        self.tags: list[bytes | tuple[bytes, bytes, bytes]] = []
        wanted = {b"host", b"user-agent", b"x-request-id"}
        for t in lst.tags:
            if t.literal is not None:
                self.tags.append(_const(t.name, t.literal))
                continue
            default = b"" if t.default is None else _const(t.name, t.default)
            header = t.header.encode() if t.header else b""
            if header:
                wanted.add(header)
            self.tags.append((t.name.encode(), header, default))
        self.head_names = frozenset(wanted)


def _fields(head: RequestHead, names: frozenset[bytes]) -> dict[bytes, bytes]:
    """The first value of each header `names` lists, by lowercase name (one pass)."""
    found: dict[bytes, bytes] = {}
    for k, v in head.headers:
        low = k.lower()
        if low in names and low not in found:
            found[low] = v
    return found


def _pb_id(hex_id: bytes | str, width: int) -> bytes:
    raw = hex_id.encode() if isinstance(hex_id, str) else hex_id
    return unhexlify(raw.rjust(width, b"0"))


def _tags(
    shared: _Shared,
    status: int,
    head: RequestHead | None,
    found: dict[bytes, bytes],
    up: str,
    err: str,
) -> bytes:
    parts = [shared.first, _attr(b"http.status_code", b"%d" % status), shared.flags]
    if up:
        parts.append(_attr(b"upstream_address", up.encode()))
    if head is not None:
        host = utf8(found.get(b"host", b""))
        parts.append(_attr(b"http.method", utf8(head.method)))
        parts.append(_attr(b"http.url", b"http://" + host + utf8(head.target)))
        parts.append(_attr(b"http.protocol", b"HTTP/" + head.version.encode()))
        agent = found.get(b"user-agent")
        if agent is not None:
            parts.append(_attr(b"user_agent", utf8(agent)))
        rid = found.get(b"x-request-id")
        if rid is not None:
            parts.append(_attr(b"guid:x-request-id", utf8(rid)))
    if status == 0 or status >= 500:
        parts.append(_attr(b"error", b"true"))
    if err:
        parts.append(_attr(b"meshfed.error", err.encode()))
    parts.append(shared.last)
    for t in shared.tags:
        if isinstance(t, bytes):
            parts.append(t)
            continue
        key, header, default = t
        value = found.get(header) if header else None
        parts.append(_attr(key, utf8(value)) if value is not None else default)
    return b"".join(parts)


def _general(span: Span, shared: _Shared, start_ns: int) -> bytes:
    """`name_of` and `tags_of` encoded as they are (a policy tag replacing a standard one)."""
    tags = tags_of(span)
    attrs = b"".join(_attr(k.encode(), v.encode()) for k, v in tags.items())
    name = b"" if span.listener.server else field(5, name_of(span).encode())
    status = _ERROR if tags.get("error") == "true" else _UNSET
    return b"".join((name, shared.kind, _times(start_ns, span.duration), attrs, status))


class Encoder:
    """One backend's spans as protobuf bytes; the listeners' shared parts kept."""

    def __init__(self) -> None:
        self._shared: dict[Listener, _Shared] = {}
        self._last: tuple[Listener | None, _Shared | None] = (None, None)
        self._batch = Batch()

    def add(self, item: Item) -> int:
        return self._batch.add(self.span(item))

    def take(self, conf: Tracing) -> Request:
        return self._request(self._batch, conf)

    def clear(self) -> None:
        self._batch = Batch()

    def span(self, item: Item) -> bytes:
        """One Span message from a `Span` or a queued (listener, record, end)."""
        trace_id: bytes | str
        span_id: bytes | str
        parent_id: bytes | str
        if isinstance(item, Span):
            lst, head, status = item.listener, item.head, item.status
            trace_id, span_id, parent_id = item.trace_id, item.span_id, item.parent_id
            start, duration, up, err = item.start, item.duration, item.upstream, item.error
        else:
            lst, record, end = item
            assert record.trace is not None
            trace_id, span_id, parent_id, _ = record.trace
            head, status, duration = record.head, record.status, record.duration
            start, up, err = end - duration, record.upstream, record.error
        shared = self._last[1] if self._last[0] is lst else self._shared.get(lst)
        if shared is None:
            shared = self._shared[lst] = _Shared(lst)
        self._last = (lst, shared)
        start_ns = int(start * 1_000_000_000)
        out = [b"\x0a\x10" + _pb_id(trace_id, 32), b"\x12\x08" + _pb_id(span_id, 16)]
        if parent_id:
            out.append(b"\x22\x08" + _pb_id(parent_id, 16))
        if shared.general:
            whole = Span(lst, "", "", "", start, duration, status, head, up, err)
            out.append(_general(whole, shared, start_ns))
            return b"".join(out)
        found = _fields(head, shared.head_names) if head is not None else {}
        if not lst.server:
            host = found.get(b"host")
            out.append(field(5, b"egress " + utf8(host) if host else b"egress"))
        out.append(shared.kind)
        out.append(_times(start_ns, duration))
        out.append(_tags(shared, status, head, found, up, err))
        out.append(_ERROR if status == 0 or status >= 500 else _UNSET)
        return b"".join(out)

    @staticmethod
    def _request(batch: Batch, conf: Tracing) -> Request:
        """One ExportTraceServiceRequest of the batch's spans, for `conf`'s service."""
        res = resource((("service.name", conf.service),))
        body = batch.request(res, scope("meshfed"))
        return Request("POST", conf.url, body, {"Content-Type": "application/x-protobuf"})


def _times(start_ns: int, duration: float) -> bytes:
    return _TIMES.pack(0x39, start_ns, 0x41, start_ns + max(1, int(duration * 1_000_000_000)))


def encode(spans: Sequence[Item], conf: Tracing) -> Request:
    """One batch (a fresh `Encoder`: the exporter keeps one instead)."""
    return encode_all(Encoder(), spans, conf)
