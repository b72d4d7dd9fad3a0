"""Header rules of a forwarding proxy and the bytes of a message head. Pure.

RFC 9110 §7.6.1: a proxy removes the hop-by-hop fields (`Connection`, every field that
`Connection` names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`,
`Upgrade`) and sets its own. Framing is re-declared per hop: a body with a Content-Length
keeps it, a chunked body is re-chunked (chunk extensions and trailers are dropped, and so
is `Trailer`), and a response body that ends with its connection is sent to an HTTP/1.1
client chunked, so the client's connection can stay open. An Upgrade request keeps its
`Upgrade` field and says `Connection: upgrade` again; so does the 101 answering it.

A head parsed from one read comes with its bytes as received (parse.py: `raw`, `hop`): when
the rules above change nothing but the hop-by-hop lines, those are cut out of the received
bytes instead of rebuilding the head field by field (the common case, and the cheaper one).

Every message the sidecar sends upstream is HTTP/1.1 with keep-alive; what the client
asked for (`Connection: close`, HTTP/1.0) applies to the client's connection only.
"""

from __future__ import annotations

from mesh_dp.http.parse import HOP_BY_HOP, Framing, Headers, RequestHead, ResponseHead

LAST_CHUNK = b"0\r\n\r\n"


def connection_tokens(headers: Headers) -> set[bytes]:
    """The lowercased field names and options listed in every `Connection` field."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def end_to_end(headers: Headers, *, keep_upgrade: bool = False) -> Headers:
    """`headers` without hop-by-hop fields (`Upgrade` stays when `keep_upgrade`)."""
    named = connection_tokens(headers)
    out: Headers = []
    for name, value in headers:
        lower = name.lower()
        hop = lower in HOP_BY_HOP or lower in named
        if hop and not (keep_upgrade and lower == b"upgrade"):
            continue
        out.append((name, value))
    return out


def _valid_field(name: bytes, value: bytes) -> bool:
    return b"\r" not in value and b"\n" not in value and b":" not in name


def _lines(headers: Headers) -> list[bytes]:
    return [b"%s: %s\r\n" % (n, v) for n, v in headers if _valid_field(n, v)]


def response_framing(upstream: Framing, client_version: str) -> Framing:
    """How the client receives a body the upstream framed as `upstream`."""
    if upstream is Framing.CLOSE and client_version == "1.1":
        return Framing.CHUNKED
    return upstream


def _without_hop(raw: bytes, hop: tuple[bytes, ...]) -> bytes:
    """`raw` (a head as received) without the lines of the fields named in `hop`. The parser
    accepted the head strictly, so each field is one line starting with its name."""
    low = raw.lower()
    for name in hop:
        needle = b"\r\n" + name + b":"
        at = low.find(needle)
        while at >= 0:
            end = low.find(b"\r\n", at + 2)
            raw, low = raw[:at] + raw[end:], low[:at] + low[end:]
            at = low.find(needle, at)
    return raw


def request_bytes(head: RequestHead) -> bytes:
    """The head sent upstream for `head` (always HTTP/1.1, keep-alive)."""
    if (
        head.hop is not None
        and head.raw
        and head.version == "1.1"
        and not head.upgrade
        and head.framing is not Framing.CHUNKED
    ):
        return _without_hop(head.raw, head.hop) if head.hop else head.raw
    upgrade = head.upgrade and head.header(b"upgrade") is not None
    headers = end_to_end(head.headers, keep_upgrade=upgrade)
    lines = [b"%s %s HTTP/1.1\r\n" % (head.method, head.target), *_lines(headers)]
    if head.framing is Framing.CHUNKED:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade:
        lines.append(b"Connection: upgrade\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def response_bytes(head: ResponseHead, framing: Framing, *, close: bool) -> bytes:
    """The head sent to the client; `close`: this response ends the client's connection."""
    if (
        head.hop is not None
        and head.raw
        and head.version == "1.1"
        and framing is head.framing
        and framing is not Framing.CHUNKED
        and head.status != 101
    ):
        raw = _without_hop(head.raw, head.hop) if head.hop else head.raw
        return raw[:-2] + b"Connection: close\r\n\r\n" if close and head.status >= 200 else raw
    upgrade = head.status == 101
    headers = end_to_end(head.headers, keep_upgrade=upgrade)
    if framing is not head.framing and framing is Framing.CHUNKED:
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    lines = [b"HTTP/1.1 %d %s\r\n" % (head.status, head.reason), *_lines(headers)]
    if framing is Framing.CHUNKED:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade:
        lines.append(b"Connection: upgrade\r\n")
    elif close and head.status >= 200:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class BodyEncoder:
    """Body bytes as one hop frames them: as they are, or as chunks."""

    __slots__ = ("chunked",)

    def __init__(self, framing: Framing) -> None:
        self.chunked = framing is Framing.CHUNKED

    def encode(self, data: bytes) -> bytes:
        if not self.chunked or not data:
            return data if not self.chunked else b""
        return b"%x\r\n%s\r\n" % (len(data), data)

    def end(self) -> bytes:
        return LAST_CHUNK if self.chunked else b""
