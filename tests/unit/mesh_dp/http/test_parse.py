"""The httptools wrapper: requests and responses as events, errors as ProtocolError."""

from __future__ import annotations

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
    Upgraded,
)


def feed_all(parser: RequestParser | ResponseParser, *chunks: bytes) -> list[Event]:
    out: list[Event] = []
    for c in chunks:
        out += parser.feed(c)
    return out


def test_pipelined_requests_come_out_in_order_with_their_bodies() -> None:
    data = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n"
        b"Trailer-Field: x\r\n\r\n"
    )
    # Byte by byte gives the same messages as one read.
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        events = feed_all(RequestParser(), *chunks)
        heads = [e for e in events if isinstance(e, RequestHead)]
        assert [h.target for h in heads] == [b"/a", b"/b", b"/c"]
        assert [h.framing for h in heads] == [Framing.NONE, Framing.LENGTH, Framing.CHUNKED]
        assert b"".join(e for e in events if isinstance(e, bytes)) == b"helloabc"
        assert events.count(END) == 3


def test_keep_alive_follows_the_version_and_connection() -> None:
    def head(raw: bytes) -> RequestHead:
        first = RequestParser().feed(raw)[0]
        assert isinstance(first, RequestHead)
        return first

    assert head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").keep_alive
    assert not head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive
    assert not head(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive
    assert head(
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    ).expects_continue


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    ],
)
def test_malformed_requests_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        RequestParser().feed(raw)
    assert err.value.status == 400


def test_a_head_above_the_limit_is_431() -> None:
    with pytest.raises(ProtocolError) as err:
        RequestParser().feed(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n")
    assert err.value.status == 431


def test_a_head_above_the_limit_is_431_when_it_comes_in_pieces_too() -> None:
    """Sizes are checked per read while a head is incomplete (no callback per field)."""
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError) as err:
        for _ in range(MAX_HEAD // 1000 + 2):
            parser.feed(b"X-Many: " + b"a" * 990 + b"\r\n")
    assert err.value.status == 431
    # ...and a head completed in a later read than it began is measured whole
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD - 100))
    with pytest.raises(ProtocolError) as err:
        parser.feed(b"a" * 200 + b"\r\n\r\n")
    assert err.value.status == 431


def test_upgrade_hands_over_the_rest() -> None:
    p = RequestParser()
    events = p.feed(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframe")
    head = events[0]
    assert isinstance(head, RequestHead) and head.upgrade
    assert events[1:] == [END, Upgraded(b"frame")]
    assert p.feed(b"more") == [b"more"]  # raw from now on


def test_eof_inside_a_request_is_an_error_and_between_requests_is_not() -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert p.eof() == []
    p.feed(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc")
    with pytest.raises(ProtocolError):
        p.eof()


def test_response_to_head_ends_at_its_head() -> None:
    p = ResponseParser(b"HEAD")
    events = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    head = events[0]
    assert isinstance(head, ResponseHead) and head.framing is Framing.NONE and head.length == 10
    assert events[1:] == [END] and p.done and p.stray == 0
    p.feed(b"0123")
    assert p.stray == 4  # a server bug: the connection is not reused


def test_interim_responses_then_the_final_one() -> None:
    p = ResponseParser(b"POST")
    events = p.feed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    statuses = [e.status for e in events if isinstance(e, ResponseHead)]
    assert statuses == [100, 201]
    assert events[-2:] == [b"ok", END] and p.done


def test_a_body_delimited_by_close_ends_at_eof() -> None:
    p = ResponseParser(b"GET")
    events = p.feed(b"HTTP/1.1 200 OK\r\n\r\npart")
    head = events[0]
    assert isinstance(head, ResponseHead) and head.framing is Framing.CLOSE
    assert p.eof() == [END]


def test_a_cut_response_is_an_error() -> None:
    p = ResponseParser(b"GET")
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ProtocolError):
        p.eof()


def test_no_body_for_204_and_304() -> None:
    for status in (204, 304):
        p = ResponseParser(b"GET")
        events = p.feed(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status)
        assert events[1:] == [END] and p.done


def test_switching_protocols() -> None:
    p = ResponseParser(b"GET")
    events = p.feed(
        b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhi"
    )
    assert isinstance(events[0], ResponseHead) and events[0].status == 101
    assert events[-1] == Upgraded(b"hi")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_any_bytes_give_events_or_a_protocol_error(data: bytes, step: int) -> None:
    """Fuzz: nothing but ProtocolError escapes, whatever the bytes and however they arrive."""
    p = RequestParser()
    try:
        for i in range(0, len(data), step):
            p.feed(data[i : i + step])
        p.eof()
    except ProtocolError as exc:
        assert exc.status in (400, 431)


def test_a_response_parser_is_reused_only_after_a_clean_response() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    parser = ResponseParser(b"GET")
    assert not parser.reset(b"GET")  # nothing ended yet
    assert parser.feed(ok)[-1] is END
    assert parser.reset(b"POST")
    events = parser.feed(ok)
    assert isinstance(events[0], ResponseHead) and events[-1] is END
    head = ResponseParser(b"HEAD")
    head.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert head.done and not head.reset(b"GET")  # llhttp still waits for 5 bytes
