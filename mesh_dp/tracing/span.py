"""A finished span as the exporters read it, and what every backend derives from it (name,
tags): Envoy's, as Kuma configures it (kuma.io/docs/latest/policies/meshtrace/). Built on
the data path with no formatting; `name_of` and `tags_of` run in the exporter's thread."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from mesh_dp.http.parse import RequestHead
from meshfed.dpconfig.tracing import TraceTag
from meshfed.dpconfig.tracing import Tracing as TracingConf


@dataclass(frozen=True, slots=True)
class Listener:
    """What the spans of one listener share."""

    server: bool  # an inbound: SERVER spans named `ingress`; else CLIENT, `egress <host>`
    service: str  # the Dataplane's service
    destination: str  # the outbound's service ("" inbound)
    cluster: str  # Envoy's upstream_cluster: the outbound's service, `localhost:<port>`
    node_id: str  # `<mesh>.<dataplane>`, Kuma's Envoy node id
    mesh: str
    zone: str
    tags: tuple[TraceTag, ...] = ()
    shared: bool = False  # Zipkin's shared span context: a server span takes the caller's id


@dataclass(slots=True)
class Span:
    listener: Listener
    trace_id: str  # 16 or 32 lowercase hex
    span_id: str  # 16 hex
    parent_id: str  # "" for a root span
    start: float  # epoch seconds
    duration: float  # seconds
    status: int  # 0: no response
    head: RequestHead | None
    upstream: str  # the endpoint that answered ("" none)
    error: str  # the sidecar's error kind ("" none)
    shared: bool = False  # a server span that reuses its caller's span id (Zipkin)


@dataclass(frozen=True, slots=True)
class Request:
    """What a format module's `encode(spans, conf)` gives the exporter to send."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str]


T_contra = TypeVar("T_contra", contravariant=True)


class Encoder(Protocol[T_contra]):
    """A format's batch in the making: each span encoded as it is added (the exporter adds
    what it finds queued every few milliseconds, so a queued request, which holds its head,
    is soon only its span's bytes), the request made when the batch is due."""

    def add(self, span: T_contra) -> int:
        """Encodes `span` into the batch; its size in bytes."""
        ...

    def take(self, conf: TracingConf) -> Request:
        """The batch's request; the batch is empty after."""
        ...

    def clear(self) -> None:
        """Forgets the batch (its backend failed)."""
        ...


def encode_all(enc: Encoder[T_contra], spans: Iterable[T_contra], conf: TracingConf) -> Request:
    """One request of `spans` (a format module's `encode`)."""
    for s in spans:
        enc.add(s)
    return enc.take(conf)


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("latin-1")


def name_of(span: Span) -> str:
    """Envoy's operation name: `ingress` inbound, `egress <Host>` outbound."""
    if span.listener.server:
        return "ingress"
    head = span.head
    host = _text(head.header(b"host")) if head is not None else ""
    return f"egress {host}" if host else "egress"


def tags_of(span: Span) -> dict[str, str]:
    """Envoy's standard tags, Kuma's `kuma.mesh`/`kuma.zone`, then the policy's tags."""
    lst, head = span.listener, span.head
    tags = {
        "component": "proxy",
        "node_id": lst.node_id,
        "zone": lst.zone,
        "upstream_cluster": lst.cluster,
        "http.status_code": str(span.status),
        "response_flags": "-",
    }
    if span.upstream:
        tags["upstream_address"] = span.upstream
    if head is not None:
        host = _text(head.header(b"host"))
        tags["http.method"] = _text(head.method)
        tags["http.url"] = f"http://{host}{_text(head.target)}"
        tags["http.protocol"] = f"HTTP/{head.version}"
        agent = head.header(b"user-agent")
        if agent is not None:
            tags["user_agent"] = _text(agent)
        rid = head.header(b"x-request-id")
        if rid is not None:
            tags["guid:x-request-id"] = _text(rid)
    if span.status == 0 or span.status >= 500:
        tags["error"] = "true"
    if span.error:
        tags["meshfed.error"] = span.error
    tags["kuma.mesh"] = lst.mesh
    tags["kuma.zone"] = lst.zone
    for t in lst.tags:
        if t.literal is not None:
            tags[t.name] = t.literal
            continue
        value = head.header(t.header.encode()) if head is not None and t.header else None
        if value is not None:
            tags[t.name] = _text(value)
        elif t.default is not None:
            tags[t.name] = t.default
    return tags
