"""Hop-by-hop rules, head bytes and body framing."""

from __future__ import annotations

import dataclasses

import pytest

from mesh_dp.http.errors import KINDS, error_response
from mesh_dp.http.headers import (
    BodyEncoder,
    end_to_end,
    request_bytes,
    response_bytes,
    response_framing,
)
from mesh_dp.http.parse import (
    END,
    Framing,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)


def request(raw: bytes) -> RequestHead:
    head = RequestParser().feed(raw)[0]
    assert isinstance(head, RequestHead)
    return head


def test_hop_by_hop_fields_and_the_ones_connection_names_are_dropped() -> None:
    headers = [
        (b"Host", b"x"),
        (b"Connection", b"keep-alive, X-Private"),
        (b"X-Private", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"TE", b"trailers"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Upgrade", b"h2c"),
        (b"X-Kept", b"2"),
    ]
    assert end_to_end(headers) == [(b"Host", b"x"), (b"X-Kept", b"2")]
    kept = end_to_end(headers, keep_upgrade=True)
    assert (b"Upgrade", b"h2c") in kept


def test_requests_go_up_as_http11_keep_alive_with_their_framing() -> None:
    raw = request(b"GET /a?b HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert request_bytes(raw) == b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in request_bytes(chunked)
    sized = request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
    assert b"Content-Length: 3\r\n" in request_bytes(sized)
    upgrade = request(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    out = request_bytes(upgrade)
    assert b"Upgrade: websocket\r\n" in out and b"Connection: upgrade\r\n" in out


def test_a_close_delimited_body_reaches_http11_clients_chunked() -> None:
    events = ResponseParser(b"GET").feed(b"HTTP/1.1 200 OK\r\nServer: s\r\n\r\n")
    head = events[0]
    assert not isinstance(head, bytes) and head is not END
    assert response_framing(Framing.CLOSE, "1.1") is Framing.CHUNKED
    assert response_framing(Framing.CLOSE, "1.0") is Framing.CLOSE
    assert response_framing(Framing.LENGTH, "1.1") is Framing.LENGTH
    out = response_bytes(head, Framing.CHUNKED, close=False)  # type: ignore[arg-type]
    assert out == b"HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n"
    closing = response_bytes(head, Framing.CLOSE, close=True)  # type: ignore[arg-type]
    assert closing.endswith(b"Connection: close\r\n\r\n")


def test_chunk_encoding() -> None:
    enc = BodyEncoder(Framing.CHUNKED)
    assert enc.encode(b"hello") == b"5\r\nhello\r\n"
    assert enc.encode(b"") == b""  # an empty chunk would end the body
    assert enc.end() == b"0\r\n\r\n"
    plain = BodyEncoder(Framing.LENGTH)
    assert plain.encode(b"abc") == b"abc" and plain.end() == b""


def test_error_responses_name_the_sidecar_and_parse() -> None:
    for kind, (status, _) in KINDS.items():
        raw = error_response(kind, "detail\r\nInjected: 1", close=True)
        events = ResponseParser(b"GET").feed(raw)
        head = events[0]
        assert not isinstance(head, bytes) and head is not END
        assert head.status == status  # type: ignore[union-attr]
        assert head.header(b"x-meshfed-error") == kind.encode()  # type: ignore[union-attr]
        assert head.header(b"injected") is None  # type: ignore[union-attr]
        assert events[-1] is END
    assert error_response("timeout", "x", close=False, head_only=True).endswith(b"\r\n\r\n")


HEADS = [
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-A:  b \r\n\r\nhi",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
    b"TE: trailers\r\nX-B: 1\r\nconnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Private\r\nX-Private: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
]


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    parsed = RequestParser().feed(head)[0]
    assert isinstance(parsed, RequestHead)
    return parsed.headers


@pytest.mark.parametrize("raw", HEADS)
def test_a_head_forwarded_as_received_equals_the_rebuilt_one(raw: bytes) -> None:
    """The received bytes minus the hop-by-hop lines (parse.py `raw`) carry the same request
    line and fields as the head rebuilt field by field."""
    head = request(raw)
    rebuilt = request_bytes(dataclasses.replace(head, raw=b"", hop=None))
    assert request_bytes(head).split(b"\r\n", 1)[0] == rebuilt.split(b"\r\n", 1)[0]
    assert _fields(request_bytes(head)) == _fields(rebuilt)


def test_a_response_forwarded_as_received_equals_the_rebuilt_one() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nServer: s\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
        b'ETag: "e"\r\n\r\nok'
    )
    head = ResponseParser(b"GET").feed(raw)[0]
    assert isinstance(head, ResponseHead) and head.raw and head.hop == (b"connection",)
    for close in (False, True):
        fast = response_bytes(head, Framing.LENGTH, close=close)
        slow = response_bytes(dataclasses.replace(head, raw=b""), Framing.LENGTH, close=close)
        assert fast == slow
