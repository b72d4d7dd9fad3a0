from __future__ import annotations

import itertools
import ssl
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.proxy.clienthello import (
    DEFAULT_MAX_HELLO,
    MAX_RECORD_PAYLOAD,
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


def feed_chunks(data: bytes, cuts: list[int], max_hello: int = DEFAULT_MAX_HELLO) -> Result:
    """Feeds `data` split at `cuts`; returns the first non-NEED_MORE result, like a server."""
    parser = ClientHelloParser(max_hello)
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    result: Result = NEED_MORE
    for start, end in itertools.pairwise(bounds):
        result = parser.feed(data[start:end])
        if result is not NEED_MORE:
            break
    return result


def outcome(data: bytes, cuts: list[int], max_hello: int = DEFAULT_MAX_HELLO) -> Result | ErrorKind:
    try:
        return feed_chunks(data, cuts, max_hello)
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
    # max_hello counts the whole handshake message, its 4-byte header included.
    size = len(handshake_payload(TLS13))
    assert isinstance(parse_client_hello(TLS13, max_hello=size), ClientHello)
    assert kind_of(TLS13, max_hello=size - 1) is ErrorKind.TOO_LARGE


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


# --- against a reference ----------------------------------------------------------------------
# The parser walks the hello with raw offsets for speed. This reference says the same thing the
# slow, obvious way (slices, whole buffer at once) so random damage to real hellos checks every
# bounds check and the order of the checks: same result, same error kind.


def _ref_fail(kind: ErrorKind = ErrorKind.MALFORMED) -> ClientHelloError:
    return ClientHelloError(kind, "reference")


def _ref_vector(data: bytes, len_size: int) -> tuple[bytes, bytes]:
    """(the length-prefixed vector at the start of `data`, what follows it)."""
    if len(data) < len_size:
        raise _ref_fail()
    n = int.from_bytes(data[:len_size], "big")
    if len(data) < len_size + n:
        raise _ref_fail()
    return data[len_size : len_size + n], data[len_size + n :]


def _ref_server_name(data: bytes) -> str:
    names, rest = _ref_vector(data, 2)
    if rest or not names:
        raise _ref_fail()
    host: str | None = None
    while names:
        name_type = names[0]
        name, names = _ref_vector(names[1:], 2)
        if name_type == 0:
            if host is not None or not name or not all(0x21 <= c <= 0x7E for c in name):
                raise _ref_fail()
            host = name.decode("ascii")
    if host is None:
        raise _ref_fail(ErrorKind.NO_SNI)
    return host


def _ref_alpn(data: bytes) -> tuple[str, ...]:
    protocols, rest = _ref_vector(data, 2)
    if rest:
        raise _ref_fail()
    out: list[str] = []
    while protocols:
        name, protocols = _ref_vector(protocols, 1)
        if not name:
            raise _ref_fail()
        out.append(name.decode("latin-1"))
    if not out:
        raise _ref_fail()
    return tuple(out)


def _ref_body(body: bytes) -> tuple[str, tuple[str, ...]]:
    session_id, rest = _ref_vector(body[34:], 1)
    if len(session_id) > 32:
        raise _ref_fail()
    suites, rest = _ref_vector(rest, 2)
    if len(suites) < 2 or len(suites) % 2:
        raise _ref_fail()
    compression, rest = _ref_vector(rest, 1)
    if not compression:
        raise _ref_fail()
    if not rest:
        raise _ref_fail(ErrorKind.NO_SNI)
    extensions, rest = _ref_vector(rest, 2)
    if rest:
        raise _ref_fail()
    found: dict[int, bytes] = {}
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    while extensions:
        if len(extensions) < 2:
            raise _ref_fail()
        ext_type = int.from_bytes(extensions[:2], "big")
        body_, extensions = _ref_vector(extensions[2:], 2)
        if ext_type in found:
            raise _ref_fail()
        found[ext_type] = body_
        if ext_type == 0:
            sni = _ref_server_name(body_)
        elif ext_type == 16:
            alpn = _ref_alpn(body_)
    if sni is None:
        raise _ref_fail(ErrorKind.NO_SNI)
    return sni, alpn


def _ref_parse(data: bytes, max_hello: int) -> Result:
    """All of `data` at once: records in turn, the handshake header checked as each arrives."""
    pos = 0
    handshake = b""
    count = 0
    while True:
        header = data[pos : pos + 5]
        bad = ErrorKind.NOT_TLS if count == 0 else ErrorKind.MALFORMED
        if header[:1] not in (b"", b"\x16") or header[1:2] not in (b"", b"\x03"):
            raise _ref_fail(bad)
        if len(header) < 5:
            return NEED_MORE
        length = int.from_bytes(header[3:5], "big")
        if not 0 < length <= MAX_RECORD_PAYLOAD:
            raise _ref_fail()
        count += 1
        if count > MAX_RECORDS:
            raise _ref_fail(ErrorKind.TOO_LARGE)
        payload = data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if not payload:
            return NEED_MORE
        handshake += payload
        if handshake[0] != 1:
            raise _ref_fail(ErrorKind.NOT_CLIENT_HELLO)
        if len(handshake) >= 4:
            n = int.from_bytes(handshake[1:4], "big")
            if 4 + n > max_hello:
                raise _ref_fail(ErrorKind.TOO_LARGE)
            if n < 38:
                raise _ref_fail()
            if len(handshake) >= 4 + n:
                sni, alpn = _ref_body(handshake[4 : 4 + n])
                return ClientHello(sni=sni, alpn=alpn, record_bytes=pos)
        if len(payload) < length:
            return NEED_MORE


def reference(data: bytes, max_hello: int = DEFAULT_MAX_HELLO) -> Result | ErrorKind:
    try:
        return _ref_parse(data, max_hello)
    except ClientHelloError as exc:
        return exc.kind


FRAGMENTED = [records(handshake_payload(h), [7, 100, 3]) for h in REAL]
BUILT = records(built_hello(sni_ext(b"a.b") + alpn_ext(b"h2", b"x") + ext(99, b"")))
SAMPLES = [*REAL, *FRAGMENTED, BUILT]


def test_reference_agrees_on_the_known_cases() -> None:
    """The reference itself is checked against the cases pinned above."""
    for hello in REAL:
        assert reference(hello) == parse_client_hello(hello)
    assert reference(b"GET /") is ErrorKind.NOT_TLS
    assert reference(TLS13, max_hello=200) is ErrorKind.TOO_LARGE
    assert reference(records(built_hello(sni_ext(b"a b")))) is ErrorKind.MALFORMED
    assert reference(records(built_hello(alpn_ext(b"h2")))) is ErrorKind.NO_SNI
    assert reference(TLS13[:-1]) is NEED_MORE


SAMPLE_IDS = ["tls1.2", "tls1.3", "no-alpn", "tls1.2-3rec", "tls1.3-3rec", "no-alpn-3rec", "built"]


@pytest.mark.parametrize("hello", SAMPLES, ids=SAMPLE_IDS)
def test_every_byte_changed_matches_the_reference(hello: bytes) -> None:
    """Every length field, type and count of a real hello set to its neighbours and extremes."""
    for i in range(len(hello)):
        for value in {0, 1, 0x20, 0x7F, 0x80, 0xFF, (hello[i] + 1) % 256, (hello[i] - 1) % 256}:
            mutated = hello[:i] + bytes([value]) + hello[i + 1 :]
            assert outcome(mutated, []) == reference(mutated), (i, value)


# A hello as a tree of length-prefixed vectors: (prefix size, content) or bytes or a sequence.
Tree = bytes | tuple[int, "Tree"] | list["Tree"]

SNI_TREE: Tree = [b"\x00\x00", (2, (2, [b"\x07", (2, b"opaque"), b"\x00", (2, b"a.b")]))]
ALPN_TREE: Tree = [b"\x00\x10", (2, (2, [(1, b"h2"), (1, b"http/1.1")]))]


def hello_tree(*extensions: Tree) -> Tree:
    return (
        3,  # the handshake message's body
        [
            b"\x03\x03" + bytes(32),
            (1, b"\x5a" * 32),  # session_id, at its limit
            (2, b"\x13\x01\x13\x02"),
            (1, b"\x00"),
            (2, [[b"\x00\x0b", (2, (1, b"\x00"))], [b"\x00\x17", (2, b"")], *extensions]),
        ],
    )


# Each of SNI and ALPN once last, where a read past its end would also leave the buffer.
TREES = [hello_tree(SNI_TREE, ALPN_TREE), hello_tree(ALPN_TREE, SNI_TREE)]


def encode(tree: Tree) -> bytes:
    if isinstance(tree, bytes):
        return tree
    if isinstance(tree, list):
        return b"".join(encode(part) for part in tree)
    size, content = tree
    data = encode(content)
    return len(data).to_bytes(size, "big") + data


def resized(tree: Tree) -> Iterator[Tree]:
    """The tree with one vector's content cut short at every length, or one byte too long."""
    if isinstance(tree, list):
        for i, part in enumerate(tree):
            for changed in resized(part):
                yield [*tree[:i], changed, *tree[i + 1 :]]
    elif isinstance(tree, tuple):
        size, content = tree
        data = encode(content)
        for n in range(len(data)):
            yield (size, data[:n])
        yield (size, data + b"\x00")
        for changed in resized(content):
            yield (size, changed)


@pytest.mark.parametrize("tree", TREES, ids=["alpn-last", "sni-last"])
def test_the_tree_is_a_valid_hello(tree: Tree) -> None:
    result = parse_client_hello(records(b"\x01" + encode(tree)))
    assert result == ClientHello("a.b", ("h2", "http/1.1"), 5 + 1 + len(encode(tree)))


@pytest.mark.parametrize("tree", TREES, ids=["alpn-last", "sni-last"])
def test_every_vector_resized_matches_the_reference(tree: Tree) -> None:
    """Each container ends exactly where a bounds check must catch it: one byte short, cut
    inside a length prefix, or one byte long with consistent lengths all around it."""
    count = 0
    for changed in resized(tree):
        data = records(b"\x01" + encode(changed))
        assert outcome(data, []) == reference(data), data.hex()
        count += 1
    assert count > 200


@FUZZ
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=600),
    st.integers(min_value=0, max_value=40),
    st.binary(max_size=40),
    st.sampled_from([16384, 600, 300]),
    CUTS,
)
def test_random_damage_matches_the_reference(
    hello: bytes,
    writes: list[tuple[int, int]],
    at: int,
    cut: int,
    insert: bytes,
    max_hello: int,
    cuts: list[int],
) -> None:
    data = bytearray(hello)
    for index, value in writes:
        data[index % len(data)] = value
    at %= len(data) + 1
    data[at : at + cut] = insert
    mutated = bytes(data)
    assert outcome(mutated, cuts, max_hello) == reference(mutated, max_hello)


# Valid framing in front of random bytes, so these reach the body walk: from the body's start,
# and from the extensions block (after a minimal valid fixed part).
FIXED_PART = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"


@FUZZ
@given(st.sampled_from([b"", FIXED_PART]), st.binary(max_size=600), CUTS)
def test_random_bodies_match_the_reference(prefix: bytes, tail: bytes, cuts: list[int]) -> None:
    body = prefix + (len(tail).to_bytes(2, "big") + tail if prefix else tail)
    data = records(b"\x01" + len(body).to_bytes(3, "big") + body)
    assert outcome(data, cuts) == reference(data)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_buffers_other_than_bytes(kind: type[bytearray] | type[memoryview]) -> None:
    parser = ClientHelloParser()
    assert parser.feed(kind(TLS13[:100])) is NEED_MORE
    assert parser.feed(kind(TLS13[100:])) == parse_client_hello(TLS13)
