"""Heads framed without llhttp (parse.py `_plain`): taken only when their framing cannot be
read two ways, and then giving exactly the events llhttp gives; every ambiguity (request
smuggling shapes included) goes to llhttp, which answers as before."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_dp.http.parse import (
    END,
    MAX_HEAD,
    Event,
    Framing,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)


class LlhttpRequests(RequestParser):
    """The parser as it was: every message through llhttp."""

    def _plain(self, data: bytes, pos: int) -> int:
        return -1


class LlhttpResponses(ResponseParser):
    def _plain(self, data: bytes, pos: int) -> int:
        return -1


def outcome(parser: RequestParser | ResponseParser, chunks: list[bytes]) -> object:
    """The events (body bytes joined) and the error, if any, with the stray count."""
    events: list[Event] = []
    try:
        for c in chunks:
            events += parser.feed(c)
        events += parser.eof()
        error: int | None = None
    except ProtocolError as exc:
        error = exc.status
    out: list[object] = []
    for ev in events:
        if isinstance(ev, RequestHead | ResponseHead):
            # A head that does not begin its read comes from llhttp without its bytes as
            # received (raw, hop, expect "not known"), from `_plain` with them: the same head.
            ev = dataclasses.replace(ev, raw=b"", hop=None)
            if isinstance(ev, RequestHead):
                ev.expect = None
        if isinstance(ev, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += ev
        else:
            out.append(ev)
    stray = parser.stray if isinstance(parser, ResponseParser) else 0
    return out, error, stray


def same_as_llhttp_request(data: bytes, step: int = 0) -> object:
    chunks = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    got = outcome(RequestParser(), chunks)
    assert got == outcome(LlhttpRequests(), chunks)
    return got


def same_as_llhttp_response(data: bytes, method: bytes = b"GET", step: int = 0) -> object:
    chunks = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    got = outcome(ResponseParser(method), chunks)
    assert got == outcome(LlhttpResponses(method), chunks)
    return got


def plain_request(data: bytes) -> bool:
    return RequestParser()._plain(data, 0) >= 0


def plain_response(data: bytes, method: bytes = b"GET") -> bool:
    return ResponseParser(method)._plain(data, 0) >= 0


REQUEST = b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nX-Y:  v w \t\r\nContent-Length: 5\r\n\r\nhello"
RESPONSE = b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 3\r\nKeep-Alive: x\r\n\r\nabc"


def test_the_usual_messages_are_plain_and_give_what_llhttp_gives() -> None:
    assert plain_request(REQUEST) and plain_response(RESPONSE)
    assert plain_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
    for step in (0, 1, 7):
        events, error, stray = same_as_llhttp_request(REQUEST, step)  # type: ignore[misc]
        assert error is None and stray == 0
        head = events[0]
        assert isinstance(head, RequestHead) and head.framing is Framing.LENGTH
        assert head.headers[1] == (b"X-Y", b"v w \t")  # llhttp keeps trailing whitespace
        assert events[1:] == [b"hello", END]
        events, error, stray = same_as_llhttp_response(RESPONSE, step=step)  # type: ignore[misc]
        assert isinstance(events[0], ResponseHead) and events[1:] == [b"abc", END]
        assert error is None and stray == 0
    # Pipelined, and a plain message after one llhttp parsed (a chunked one).
    chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    for data in (REQUEST * 3, chunked + REQUEST + chunked + REQUEST):
        for step in (0, 1, 5, 64):
            same_as_llhttp_request(data, step)


def test_a_plain_head_is_the_head_llhttp_gives_with_its_bytes_as_received() -> None:
    request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nTE: x\r\nExpect: y\r\n\r\n"
    for data, parsers in (
        (REQUEST, (RequestParser(), LlhttpRequests())),
        (request, (RequestParser(), LlhttpRequests())),
        (RESPONSE, (ResponseParser(b"GET"), LlhttpResponses(b"GET"))),
    ):
        fast, slow = (p.feed(data)[0] for p in parsers)
        assert fast == slow and fast.raw, data  # type: ignore[union-attr]


def test_bytes_after_a_plain_response_are_stray_or_llhttps() -> None:
    assert not plain_response(RESPONSE + b"x")  # in the same read: llhttp decides (400)
    same_as_llhttp_response(RESPONSE + b"xyz")
    parser = ResponseParser(b"GET")
    parser.feed(RESPONSE[:-1])
    assert parser.feed(b"cxyz") == [b"c", END] and parser.stray == 3  # not reused
    assert not parser.reset(b"GET")
    parser = ResponseParser(b"GET")
    parser.feed(RESPONSE)
    assert parser.reset(b"GET")  # clean: the parser (llhttp between messages) is reused
    assert outcome(parser, [RESPONSE]) == outcome(LlhttpResponses(b"GET"), [RESPONSE])


def test_a_cut_plain_message_is_an_error_at_eof() -> None:
    assert same_as_llhttp_request(REQUEST[:-1])[1] == 400  # type: ignore[index]
    with pytest.raises(ProtocolError):
        parser = ResponseParser(b"GET")
        parser.feed(RESPONSE[:-1])
        parser.eof()


# Every shape whose framing could be read two ways, or that llhttp refuses: not plain, and
# the outcome is llhttp's (an error where it refuses the message).
AMBIGUOUS_REQUESTS = [
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nX: a\r\n Content-Length: 5\r\n\r\nhello",  # obs-fold
    b"POST / HTTP/1.1\r\nX: a\r\n\tb\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\nContent-Length: 5\n\nhello",  # bare LF
    b"POST / HTTP/1.1\r\nContent-Length: 5\n\r\nhello",
    b"POST / HTTP/1.1\r\nX: a\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\nhello",  # bare CR
    b"POST / HTTP/1.1\r\nX: a\x00b\r\nContent-Length: 5\r\n\r\nhello",  # NUL
    b"POST / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
    b"POST / HTTP/1.1\r\nX\x00: a\r\n\r\n",
    b"POST / HTTP/1.1\r\n: a\r\n\r\n",
    b"POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nrest",
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"G(T / HTTP/1.1\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
]


@pytest.mark.parametrize("data", AMBIGUOUS_REQUESTS)
def test_ambiguous_requests_go_to_llhttp(data: bytes) -> None:
    assert not plain_request(data)
    for step in (0, 1):
        same_as_llhttp_request(data, step)


def test_the_smuggling_shapes_stay_errors() -> None:
    for data in AMBIGUOUS_REQUESTS[:7] + AMBIGUOUS_REQUESTS[9:11] + AMBIGUOUS_REQUESTS[12:24]:
        assert same_as_llhttp_request(data)[1] == 400, data  # type: ignore[index]


def test_an_oversize_head_goes_to_llhttp_and_is_431() -> None:
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    assert not plain_request(data)
    assert same_as_llhttp_request(data)[1] == 431  # type: ignore[index]


AMBIGUOUS_RESPONSES = [
    (b"HTTP/1.1 200 OK\r\n\r\nbody", b"GET"),  # delimited by the close
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", b"GET"),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET",
    ),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"GET"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\r\nX: a\r\n Content-Length: 3\r\n\r\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 3\r\n\r\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc", b"GET"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"HEAD"),
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", b"GET"),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", b"GET"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", b"GET"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw", b"GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc", b"GET"),
]


@pytest.mark.parametrize(("data", "method"), AMBIGUOUS_RESPONSES)
def test_ambiguous_responses_go_to_llhttp(data: bytes, method: bytes) -> None:
    assert not plain_response(data, method)
    for step in (0, 1):
        same_as_llhttp_response(data, method, step)


def test_a_final_response_after_an_interim_one_may_be_plain() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + RESPONSE
    events, _, _ = same_as_llhttp_response(data)  # type: ignore[misc]
    assert [e.status for e in events if isinstance(e, ResponseHead)] == [100, 200]


PIECE = st.sampled_from(
    [
        b"Host: a\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: 0\r\n",
        b"Content-Length:03\r\n",
        b"content-length: 3 \r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: keep-alive\r\n",
        b"Connection: close\r\n",
        b"Expect: 100-continue\r\n",
        b"X: \x80\xff\r\n",
        b"X:\t\r\n",
        b" x\r\n",
        b"X : y\r\n",
        b"X: y\n",
        b"X: y\r",
        b"\x00",
        b"Y: y, z\r\n",
    ]
)
START = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"POST /a/b?c=d&e=%20 HTTP/1.1\r\n",
        b"PUT * HTTP/1.1\r\n",
        b"HEAD http://x/y HTTP/1.1\r\n",
        b"DELETE /\x7f HTTP/1.1\r\n",
        b'OPTIONS /"{}<> HTTP/1.1\r\n',
        b"PATCH / HTTP/1.0\r\n",
    ]
)
STATUS = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 503 \r\n",
        b"HTTP/1.1 404 Not\tFound \xe9\r\n",
        b"HTTP/1.1 299\r\n",
        b"HTTP/1.1 204 No Content\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 201 Created\r\n",
    ]
)
STEP = st.sampled_from([0, 1, 3, 30, 50, 80])  # 0: one read; heads are whole from 30 up
TAIL = st.sampled_from([b"", b"abc", b"abcdef", b"0\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n"])


@settings(max_examples=400, deadline=None)
@given(START, st.lists(PIECE, max_size=5), TAIL, STEP, st.integers(1, 2))
def test_requests_are_framed_as_llhttp_frames_them(
    start: bytes, pieces: list[bytes], tail: bytes, step: int, times: int
) -> None:
    data = (start + b"".join(pieces) + b"\r\n" + tail) * times
    same_as_llhttp_request(data, step)


@settings(max_examples=300, deadline=None)
@given(STATUS, st.lists(PIECE, max_size=5), TAIL, STEP, st.sampled_from([b"GET", b"HEAD"]))
def test_responses_are_framed_as_llhttp_frames_them(
    status: bytes, pieces: list[bytes], tail: bytes, step: int, method: bytes
) -> None:
    data = status + b"".join(pieces) + b"\r\n" + tail
    chunks = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    got, slow = outcome(ResponseParser(method), chunks), outcome(LlhttpResponses(method), chunks)
    # Bytes after a plain response in a later read are stray (the connection is not reused)
    # where llhttp, which saw the response, may find them malformed (tested above).
    assert got == slow or (got[2] > 0 and got[1] is None and step)  # type: ignore[index,operator]
