from __future__ import annotations

import itertools
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.proxy.clienthello import (
    MAX_RECORDS,
    NEED_MORE,
    ClientHello,
    ClientHelloError,
    ClientHelloParser,
    ErrorKind,
    Result,
    parse_client_hello,
)
from tests.unit.proxy.hellos import (
    alpn_ext,
    built_hello,
    ext,
    handshake_payload,
    real_hello,
    records,
    sni_ext,
    u16,
)

SNI = "backend.default.sni.mesh"
TLS12 = real_hello(SNI, ["h2", "http/1.1"], ssl.TLSVersion.TLSv1_2)
TLS13 = real_hello(SNI, ["h2", "http/1.1"], ssl.TLSVersion.TLSv1_3)
NO_ALPN = real_hello("web.default.sni.mesh")
REAL = [TLS12, TLS13, NO_ALPN]


def feed_chunks(data: bytes, cuts: list[int]) -> Result:
    """Feeds `data` split at `cuts`; returns the first non-NEED_MORE result, like a server."""
    parser = ClientHelloParser()
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    result: Result = NEED_MORE
    for start, end in itertools.pairwise(bounds):
        result = parser.feed(data[start:end])
        if result is not NEED_MORE:
            break
    return result


def outcome(data: bytes, cuts: list[int]) -> Result | ErrorKind:
    try:
        return feed_chunks(data, cuts)
    except ClientHelloError as exc:
        return exc.kind


# --- real ClientHellos ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hello", "alpn"),
    [(TLS12, ("h2", "http/1.1")), (TLS13, ("h2", "http/1.1")), (NO_ALPN, ())],
    ids=["tls1.2", "tls1.3", "no-alpn"],
)
def test_real_hellos_from_python_ssl(hello: bytes, alpn: tuple[str, ...]) -> None:
    result = parse_client_hello(hello)
    assert isinstance(result, ClientHello)
    assert result.sni == (SNI if alpn else "web.default.sni.mesh")
    assert result.alpn == alpn
    assert result.record_bytes == len(hello)


def test_one_byte_at_a_time() -> None:
    parser = ClientHelloParser()
    for i in range(len(TLS13) - 1):
        assert parser.feed(TLS13[i : i + 1]) is NEED_MORE
    result = parser.feed(TLS13[-1:])
    assert isinstance(result, ClientHello) and result.sni == SNI


@pytest.mark.parametrize("hello", REAL)
def test_every_truncation_needs_more(hello: bytes) -> None:
    for n in range(len(hello)):
        assert parse_client_hello(hello[:n]) is NEED_MORE


@pytest.mark.parametrize("sizes", [[1], [4], [5, 1, 100], [50] * 20, [2] * 63])
def test_hello_fragmented_over_several_records(sizes: list[int]) -> None:
    payload = handshake_payload(TLS13)
    framed = records(payload, sizes)
    result = parse_client_hello(framed)
    assert isinstance(result, ClientHello)
    assert (result.sni, result.record_bytes) == (SNI, len(framed))


def test_bytes_after_the_hello_are_not_counted_and_the_result_sticks() -> None:
    extra = b"\x17\x03\x03\x00\x05hello"  # e.g. early data the caller will replay
    parser = ClientHelloParser()
    result = parser.feed(TLS12 + extra)
    assert isinstance(result, ClientHello) and result.record_bytes == len(TLS12)
    assert parser.feed(b"more") is result


def test_record_bytes_covers_the_whole_last_record() -> None:
    # Padding after the hello inside its own record still belongs to that record.
    payload = built_hello(sni_ext(b"a.b")) + b"\x00" * 7
    framed = records(payload)
    result = parse_client_hello(framed)
    assert isinstance(result, ClientHello) and result.record_bytes == len(framed)


def test_sni_case_and_alpn_bytes_are_reported_as_sent() -> None:
    hello = built_hello(sni_ext(b"Backend.Default.sni.mesh") + alpn_ext(b"h2", b"\xff\x01"))
    result = parse_client_hello(records(hello))
    assert isinstance(result, ClientHello)
    assert result.sni == "Backend.Default.sni.mesh"
    assert result.alpn == ("h2", "\xff\x01")


def test_other_name_types_are_skipped() -> None:
    sni = ext(0, u16(b"\x07" + u16(b"x") + b"\x00" + u16(b"a.b")))
    result = parse_client_hello(records(built_hello(sni)))
    assert isinstance(result, ClientHello) and result.sni == "a.b"


# --- errors -----------------------------------------------------------------------------------


def kind_of(data: bytes, max_hello: int | None = None) -> ErrorKind:
    parser = ClientHelloParser() if max_hello is None else ClientHelloParser(max_hello)
    with pytest.raises(ClientHelloError) as info:
        parser.feed(data)
    return info.value.kind


def test_plain_text_fails_on_the_first_byte() -> None:
    assert kind_of(b"G") is ErrorKind.NOT_TLS
    assert kind_of(b"GET / HTTP/1.1\r\n\r\n") is ErrorKind.NOT_TLS
    assert kind_of(b"\x16\x02") is ErrorKind.NOT_TLS  # wrong major version
    assert kind_of(b"\x15\x03\x03\x00\x02\x02\x28") is ErrorKind.NOT_TLS  # an alert
    assert kind_of(b"\x80\x2e\x01\x03\x01") is ErrorKind.NOT_TLS  # SSLv2-style hello


def test_other_handshake_messages_are_not_a_client_hello() -> None:
    server_hello = b"\x02" + handshake_payload(TLS12)[1:]
    assert kind_of(records(server_hello)) is ErrorKind.NOT_CLIENT_HELLO
    assert kind_of(records(b"\x02")) is ErrorKind.NOT_CLIENT_HELLO  # known after one byte


def test_size_limits() -> None:
    huge = b"\x01" + (1 << 20).to_bytes(3, "big")
    assert kind_of(records(huge)) is ErrorKind.TOO_LARGE  # refused before buffering it
    assert kind_of(TLS13, max_hello=200) is ErrorKind.TOO_LARGE
    assert kind_of(b"\x16\x03\x01\x40\x01") is ErrorKind.MALFORMED  # record over 2^14
    assert kind_of(b"\x16\x03\x01\x00\x00") is ErrorKind.MALFORMED  # empty record
    dribbled = records(handshake_payload(TLS13), [1] * (MAX_RECORDS + 1))
    assert kind_of(dribbled) is ErrorKind.TOO_LARGE


def test_no_sni() -> None:
    assert kind_of(real_hello(None)) is ErrorKind.NO_SNI
    assert kind_of(records(built_hello(None))) is ErrorKind.NO_SNI
    assert kind_of(records(built_hello(alpn_ext(b"h2")))) is ErrorKind.NO_SNI
    assert kind_of(records(built_hello(sni_ext(b"x", name_type=5)))) is ErrorKind.NO_SNI


@pytest.mark.parametrize(
    "hello",
    [
        built_hello(sni_ext(b"a") + sni_ext(b"b")),  # duplicate extension
        built_hello(sni_ext(b"a", b"b")),  # two host names
        built_hello(sni_ext(b"")),  # empty host name
        built_hello(sni_ext(b"a b")),  # not printable ASCII without spaces
        built_hello(sni_ext(b"caf\xc3\xa9")),
        built_hello(ext(0, b"\x00\x00")),  # empty server_name_list
        built_hello(ext(0, b"\x00\x05\x00\x00\x01a")),  # list longer than its extension
        built_hello(ext(0, b"\x00\x04\x00\x00\x01a\x00")),  # bytes after the list
        built_hello(sni_ext(b"a") + alpn_ext()),  # empty ALPN list
        built_hello(sni_ext(b"a") + alpn_ext(b"")),  # empty ALPN name
        built_hello(sni_ext(b"a"), session_id=bytes(33)),
        built_hello(sni_ext(b"a"), suites=b"\x13"),
        built_hello(sni_ext(b"a"), suites=b""),
        built_hello(sni_ext(b"a"), compression=b""),
        built_hello(sni_ext(b"a"), trailing=b"\x00"),
        built_hello(sni_ext(b"a") + b"\x00"),  # half an extension header
        b"\x01\x00\x00\x05" + b"\x03\x03\x00\x00\x00",  # shorter than any ClientHello
    ],
)
def test_malformed(hello: bytes) -> None:
    assert kind_of(records(hello)) is ErrorKind.MALFORMED


def test_non_handshake_record_in_the_middle_is_malformed() -> None:
    payload = handshake_payload(TLS13)
    data = records(payload[:10]) + b"\x17\x03\x03\x00\x01x"
    assert kind_of(data) is ErrorKind.MALFORMED


def test_errors_are_sticky() -> None:
    parser = ClientHelloParser()
    with pytest.raises(ClientHelloError):
        parser.feed(b"GET /")
    with pytest.raises(ClientHelloError) as info:
        parser.feed(TLS13)
    assert info.value.kind is ErrorKind.NOT_TLS


# --- fuzzing ----------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
CUTS = st.lists(st.integers(min_value=0, max_value=600), max_size=12)


@FUZZ
@given(st.binary(max_size=700), CUTS)
def test_random_bytes_only_raise_the_parsers_error(data: bytes, cuts: list[int]) -> None:
    result = outcome(data, cuts)
    assert result is NEED_MORE or isinstance(result, ClientHello | ErrorKind)


@FUZZ
@given(st.sampled_from(REAL), CUTS)
def test_any_tcp_split_gives_the_same_result(hello: bytes, cuts: list[int]) -> None:
    assert feed_chunks(hello, cuts) == parse_client_hello(hello)


@FUZZ
@given(
    st.sampled_from(REAL),
    st.lists(st.integers(min_value=0, max_value=517 * 8 - 1), min_size=1, max_size=8),
    CUTS,
)
def test_bit_flips_never_crash_and_do_not_depend_on_splitting(
    hello: bytes, flips: list[int], cuts: list[int]
) -> None:
    data = bytearray(hello)
    for bit in flips:
        data[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    mutated = bytes(data)
    assert outcome(mutated, cuts) == outcome(mutated, [])


@FUZZ
@given(
    st.sampled_from(REAL),
    st.integers(min_value=0, max_value=600),
    st.integers(min_value=0, max_value=40),
    st.binary(max_size=40),
    CUTS,
)
def test_splices_and_truncations_never_crash(
    hello: bytes, at: int, cut: int, insert: bytes, cuts: list[int]
) -> None:
    at = at % (len(hello) + 1)
    mutated = hello[:at] + insert + hello[at + cut :]
    assert outcome(mutated, cuts) == outcome(mutated, [])


@FUZZ
@given(st.sampled_from(REAL), st.lists(st.integers(min_value=1, max_value=300), max_size=8), CUTS)
def test_any_record_fragmentation_parses(hello: bytes, sizes: list[int], cuts: list[int]) -> None:
    framed = records(handshake_payload(hello), sizes)
    result = feed_chunks(framed, cuts)
    assert isinstance(result, ClientHello)
    assert result == parse_client_hello(framed)
    assert result.record_bytes == len(framed)
