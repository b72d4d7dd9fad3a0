"""Fuzzing the zone DNS answer logic (`DnsTable.respond`, what zone-cp's DNS server runs for
every UDP and TCP query): any bytes give an action, never an exception; an answer is a DNS
message with the query's ID; a known name answers its address whatever else the query holds."""

from __future__ import annotations

import struct

from dnslib import DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from tests.bounds import fuzz
from tests.unit.dns.wire import opt_record, query
from zone_cp.dns.answers import RCODE_NOERROR, DnsTable, Drop, Forward

RECORDS = [
    ("backend.mesh", "127.1.0.1"),
    ("web.mesh", "127.1.0.2"),
    ("backend.zone-2.mesh", "127.1.0.3"),
    *(("big.mesh", f"127.1.1.{i}") for i in range(1, 80)),
]
TABLES = (DnsTable(RECORDS), DnsTable(RECORDS, forwarding=True))
LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_*", min_size=1, max_size=63)
NAMES = st.one_of(
    st.sampled_from(["backend.mesh", "BaCkEnD.MeSh", "web.mesh", "big.mesh", "zone-2.mesh"]),
    st.lists(LABEL, min_size=1, max_size=5).map(lambda ls: ".".join(ls)),
    st.lists(LABEL, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "mesh"])),
)


def check_action(table: DnsTable, data: bytes, tcp: bool) -> None:
    action = table.respond(data, tcp=tcp)
    assert isinstance(action, bytes | Forward | Drop)
    if isinstance(action, bytes):
        assert len(action) >= 12 and action[:2] == data[:2]
        assert action[2] & 0x80, "a reply has QR set"
        if not tcp:
            assert len(action) <= 65535


@fuzz(600)
@given(data=st.binary(max_size=600), tcp=st.booleans(), forwarding=st.booleans())
def test_any_bytes_give_an_action(data: bytes, tcp: bool, forwarding: bool) -> None:
    check_action(TABLES[forwarding], data, tcp)


@fuzz(400)
@given(
    name=NAMES,
    qtype=st.sampled_from([1, 2, 6, 15, 16, 28, 33, 255, 0, 65535]),
    qclass=st.sampled_from([1, 3, 255, 254]),
    edns=st.one_of(st.none(), st.integers(0, 65535)),
    do=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=40),
    tcp=st.booleans(),
)
def test_mutated_queries_give_an_action(
    name: str,
    qtype: int,
    qclass: int,
    edns: int | None,
    do: bool,
    flips: list[tuple[int, int]],
    tail: bytes,
    tcp: bool,
) -> None:
    """Real queries with bytes flipped and junk appended: the hand parser's edge cases."""
    try:
        packet = bytearray(query(name, qtype, qclass=qclass, edns=edns, do=do))
    except (ValueError, struct.error):
        return
    for pos, value in flips:
        if pos < len(packet):
            packet[pos] = value
    for table in TABLES:
        check_action(table, bytes(packet) + tail, tcp)


@fuzz(300)
@given(
    name=st.sampled_from(["backend.mesh", "web.mesh", "backend.zone-2.mesh"]),
    qid=st.integers(0, 65535),
    case=st.lists(st.booleans(), min_size=20, max_size=20),
    edns=st.one_of(st.none(), st.integers(512, 4096)),
    options=st.binary(max_size=20).map(lambda b: struct.pack(">HH", 65001, len(b)) + b),
)
def test_a_known_name_answers_its_address(
    name: str, qid: int, case: list[bool], edns: int | None, options: bytes
) -> None:
    cased = "".join(
        c.upper() if up else c for c, up in zip(name, case + [False] * 20, strict=False)
    )
    packet = query(cased, "A", qid=qid, edns=edns, options=options if edns else b"")
    reply = DNSRecord.parse(TABLES[0].respond(packet))
    assert reply.header.id == qid and reply.header.rcode == RCODE_NOERROR
    assert str(reply.q.qname).rstrip(".") == cased, "the question is echoed with its casing"
    assert [str(rr.rdata) for rr in reply.rr] == [ip for n, ip in RECORDS if n == name]


@fuzz(200)
@given(extra=st.lists(st.binary(min_size=11, max_size=30), max_size=3))
def test_additional_records_never_crash(extra: list[bytes]) -> None:
    """Several OPT or odd additional records: FORMERR or an answer, never an exception."""
    base = bytearray(query("backend.mesh", "A"))
    base[11] = len(extra) + 1
    packet = bytes(base) + opt_record() + b"".join(extra)
    check_action(TABLES[0], packet, False)
