"""Fuzzing the zone ingress's ClientHello parser (every ingress connection's first bytes):
any bytes, in any split, end in NEED_MORE, a ClientHello or ClientHelloError, never another
exception; a real hello fed in random pieces always yields its SNI and ALPN."""

from __future__ import annotations

import contextlib
import itertools
import ssl

from hypothesis import given
from hypothesis import strategies as st

from meshfed.proxy.clienthello import (
    NEED_MORE,
    ClientHello,
    ClientHelloError,
    ClientHelloParser,
)
from tests.bounds import fuzz

# Labels start with a letter: OpenSSL sends no SNI for what parses as an IP address ("0").
SNI_LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,29}", fullmatch=True)
SNIS = st.lists(SNI_LABEL, min_size=1, max_size=4).map(".".join)
ALPNS = st.lists(st.sampled_from(["h2", "http/1.1", "kuma", "x" * 20]), max_size=3, unique=True)


def real_hello(sni: str, alpn: list[str]) -> bytes:
    """The first flight of Python's TLS client for `sni`: a ClientHello as OpenSSL writes it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA bundle to load: only the hello counts
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def feed_in_pieces(data: bytes, cuts: list[int]) -> ClientHello | None:
    """Feeds `data` split at `cuts`; the result, None when more is needed. May raise
    ClientHelloError, and nothing else."""
    parser = ClientHelloParser()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    result = None
    for start, end in itertools.pairwise(points):
        result = parser.feed(data[start:end])
        if result is not NEED_MORE:
            assert isinstance(result, ClientHello)
            return result
    return None


@fuzz(800)
@given(data=st.binary(max_size=800), cuts=st.lists(st.integers(0, 800), max_size=6))
def test_any_bytes_in_any_split(data: bytes, cuts: list[int]) -> None:
    try:
        feed_in_pieces(data, cuts)
    except ClientHelloError as exc:
        assert str(exc.kind)


@fuzz(300)
@given(sni=SNIS, alpn=ALPNS, cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_real_hellos_in_random_pieces_give_their_sni(
    sni: str, alpn: list[str], cuts: list[int]
) -> None:
    hello = real_hello(sni, alpn)
    got = feed_in_pieces(hello, cuts)
    assert got is not None and got.sni == sni and list(got.alpn) == alpn
    assert got.record_bytes == len(hello)


@fuzz(500)
@given(
    sni=SNIS,
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 4000),
)
def test_mutated_real_hellos(sni: str, flips: list[tuple[int, int]], cut: int) -> None:
    """Real hellos with bytes changed or cut short: the length checks' edge cases."""
    data = bytearray(real_hello(sni, ["h2"]))
    for pos, value in flips:
        data[pos % len(data)] = value
    try:
        got = feed_in_pieces(bytes(data[: max(1, cut % (len(data) + 1))]), [cut // 3])
    except ClientHelloError:
        return
    if got is not None:
        assert got.sni and all(0x21 <= ord(c) < 0x7F for c in got.sni)


@fuzz(200)
@given(sni=SNIS, record=st.integers(1, 64))
def test_a_hello_split_over_many_records(sni: str, record: int) -> None:
    """RFC 8446 5.1: a handshake message may span records; re-frame a real hello."""
    hello = real_hello(sni, [])
    body = hello[5:]
    framed = b"".join(
        b"\x16\x03\x01" + len(body[i : i + record]).to_bytes(2, "big") + body[i : i + record]
        for i in range(0, len(body), record)
    )
    try:
        got = feed_in_pieces(framed, [])
    except ClientHelloError as exc:
        assert len(body) > record * 64 and exc.kind == "too_large"  # MAX_RECORDS
        return
    assert got is not None and got.sni == sni
