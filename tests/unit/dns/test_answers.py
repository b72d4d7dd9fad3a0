"""The pure answer logic: every rule of the `.mesh` resolver, on exact wire bytes."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.dns.wire import a_records, opt_record, parse, query, wire_name
from zone_cp.dns.answers import (
    DROP,
    MEMO_ENTRIES,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    DnsTable,
    Forward,
    error_reply,
    truncate_for_udp,
)

RECORDS = [
    ("backend.mesh", "127.1.0.1"),
    ("web.mesh", "127.1.0.2"),
    ("backend.zone-2.mesh", "127.1.0.3"),
    ("multi.mesh", "127.1.0.4"),
    ("multi.mesh", "127.1.0.5"),
]
BIG = [("big.mesh", f"127.1.1.{i}") for i in range(1, 61)]  # 60 A records: ~1 kB


@pytest.fixture
def table() -> DnsTable:
    return DnsTable(RECORDS + BIG)


@pytest.fixture
def forwarding() -> DnsTable:
    return DnsTable(RECORDS, forwarding=True)


def rcode(reply: object) -> int:
    return int(parse(reply).header.rcode)


# --- answers for known names ------------------------------------------------------------------


def test_a_record_for_service_with_ttl_30_and_authority(table: DnsTable) -> None:
    reply = parse(table.respond(query("backend.mesh")))
    assert reply.header.rcode == RCODE_NOERROR
    assert reply.header.aa == 1 and reply.header.qr == 1
    assert [(str(rr.rname), rr.ttl, str(rr.rdata)) for rr in reply.rr] == [
        ("backend.mesh.", 30, "127.1.0.1")
    ]


def test_zone_pinned_name(table: DnsTable) -> None:
    assert a_records(table.respond(query("backend.zone-2.mesh"))) == ["127.1.0.3"]


def test_several_addresses_for_one_name(table: DnsTable) -> None:
    assert a_records(table.respond(query("multi.mesh"))) == ["127.1.0.4", "127.1.0.5"]


@pytest.mark.parametrize("name", ["BACKEND.MESH", "BaCkEnD.mEsH", "backend.MESH."])
def test_names_are_case_insensitive_and_question_casing_is_echoed(
    table: DnsTable, name: str
) -> None:
    packet = query(name)
    reply = table.respond(packet)
    assert a_records(reply) == ["127.1.0.1"]
    assert isinstance(reply, bytes)
    # The question section comes back byte for byte, casing included.
    question = wire_name(name) + b"\x00\x01\x00\x01"
    assert reply[12 : 12 + len(question)] == question


def test_query_id_is_patched_into_every_reply(table: DnsTable) -> None:
    for qid in (0, 1, 0x1234, 0xFFFF, *random.sample(range(65536), 50)):
        reply = table.respond(query("backend.mesh", qid=qid))
        assert isinstance(reply, bytes)
        assert struct.unpack(">H", reply[:2])[0] == qid
        assert a_records(reply) == ["127.1.0.1"]


def test_remembered_reply_keeps_the_new_id_and_casing(table: DnsTable) -> None:
    first = table.respond(query("Web.mesh", qid=7))
    second = table.respond(query("Web.mesh", qid=8))
    other_case = table.respond(query("WEB.mesh", qid=9))
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert first[2:] == second[2:] and second[:2] == b"\x00\x08"
    assert parse(other_case).q.qname.label == (b"WEB", b"mesh")


@pytest.mark.parametrize("qtype", ["AAAA", "TXT", "MX", "SRV", "NS"])
def test_other_types_for_known_name_are_empty_noerror_with_soa(table: DnsTable, qtype: str) -> None:
    reply = parse(table.respond(query("backend.mesh", qtype)))
    assert reply.header.rcode == RCODE_NOERROR
    assert reply.rr == []
    assert [rr.rtype for rr in reply.auth] == [6]  # SOA: lets resolvers cache the "no data"


def test_any_answers_the_a_records(table: DnsTable) -> None:
    assert a_records(table.respond(query("backend.mesh", "ANY"))) == ["127.1.0.1"]


def test_class_any_is_answered_and_chaos_is_refused(table: DnsTable) -> None:
    assert a_records(table.respond(query("backend.mesh", qclass=255))) == ["127.1.0.1"]
    assert rcode(table.respond(query("backend.mesh", qclass=3))) == RCODE_REFUSED


def test_unknown_mesh_name_is_nxdomain_with_soa(table: DnsTable) -> None:
    reply = parse(table.respond(query("nosuch.mesh")))
    assert reply.header.rcode == RCODE_NXDOMAIN and reply.header.aa == 1
    soa = reply.auth[0]
    assert str(soa.rname) == "mesh." and soa.rtype == 6
    assert soa.rdata.times[-1] == 30  # negative answers cached no longer than positive ones


def test_names_below_a_service_are_nxdomain(table: DnsTable) -> None:
    assert rcode(table.respond(query("x.backend.mesh"))) == RCODE_NXDOMAIN


def test_empty_non_terminal_exists_without_data(table: DnsTable) -> None:
    reply = parse(table.respond(query("zone-2.mesh")))
    assert reply.header.rcode == RCODE_NOERROR and reply.rr == []


def test_apex_answers_soa(table: DnsTable) -> None:
    reply = parse(table.respond(query("mesh", "SOA")))
    assert reply.header.rcode == RCODE_NOERROR
    assert [rr.rtype for rr in reply.rr] == [6]
    assert rcode(table.respond(query("mesh", "A"))) == RCODE_NOERROR


def test_a_record_at_the_apex_keeps_its_soa() -> None:
    table = DnsTable([("mesh", "127.1.0.8")])
    assert a_records(table.respond(query("mesh"))) == ["127.1.0.8"]
    assert [rr.rtype for rr in parse(table.respond(query("mesh", "SOA"))).rr] == [6]


def test_label_boundary_matters(table: DnsTable) -> None:
    # One 9-byte label "abcd\x04mesh" ends with the bytes of ".mesh" but is not under it.
    packet = struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\x09abcd\x04mesh\x00\x00\x01\x00\x01"
    assert rcode(table.respond(packet)) == RCODE_REFUSED
    assert rcode(table.respond(query("notmesh"))) == RCODE_REFUSED


# --- names outside the domain -----------------------------------------------------------------


def test_outside_names_are_refused_without_upstream(table: DnsTable) -> None:
    reply = parse(table.respond(query("example.com")))
    assert reply.header.rcode == RCODE_REFUSED
    assert reply.header.aa == 0 and reply.header.ra == 0


def test_outside_names_are_forwarded_with_the_clients_udp_size(forwarding: DnsTable) -> None:
    plain = forwarding.respond(query("example.com"))
    assert isinstance(plain, Forward) and plain.udp_size == 512
    edns = forwarding.respond(query("example.com", edns=4096))
    assert isinstance(edns, Forward) and edns.udp_size == 4096
    tiny = forwarding.respond(query("example.com", edns=100))
    assert isinstance(tiny, Forward) and tiny.udp_size == 512  # RFC 6891: below 512 means 512


def test_forwarding_table_advertises_recursion(forwarding: DnsTable) -> None:
    assert parse(forwarding.respond(query("backend.mesh"))).header.ra == 1
    assert parse(forwarding.respond(query("nosuch.mesh"))).header.rcode == RCODE_NXDOMAIN


# --- header flags and EDNS --------------------------------------------------------------------


def test_rd_and_cd_are_copied_and_ad_is_never_set(table: DnsTable) -> None:
    for rd in (False, True):
        for cd in (False, True):
            header = parse(table.respond(query("backend.mesh", rd=rd, cd=cd, ad=True))).header
            assert (header.rd, header.cd, header.ad) == (int(rd), int(cd), 0)


@pytest.mark.parametrize("do", [False, True])
def test_edns_query_gets_an_opt_record_with_do_echoed(table: DnsTable, do: bool) -> None:
    reply = parse(table.respond(query("backend.mesh", edns=4096, do=do)))
    opts = [rr for rr in reply.ar if rr.rtype == 41]
    assert len(opts) == 1
    assert opts[0].rclass == 1232  # our advertised size
    assert bool(opts[0].ttl & 0x8000) is do
    assert [str(rr.rdata) for rr in reply.rr] == ["127.1.0.1"]


def test_edns_options_are_accepted_and_not_echoed(table: DnsTable) -> None:
    cookie = struct.pack(">HH", 10, 8) + b"\x01" * 8
    reply = table.respond(query("backend.mesh", edns=1232, options=cookie))
    assert a_records(reply) == ["127.1.0.1"]
    assert isinstance(reply, bytes) and reply.endswith(opt_record(1232))  # no options back


def test_edns_nxdomain_and_refused_carry_opt(table: DnsTable) -> None:
    for name in ("nosuch.mesh", "example.com"):
        assert [rr.rtype for rr in parse(table.respond(query(name, edns=1232))).ar] == [41]


def test_unknown_edns_version_is_badvers(table: DnsTable) -> None:
    plain = query("backend.mesh")
    packet = plain[:10] + b"\x00\x01" + plain[12:] + opt_record(version=1)
    reply = parse(table.respond(packet))
    opt = reply.ar[0]
    assert opt.rtype == 41 and (opt.ttl >> 24) == 1  # extended rcode 1 + header 0 = BADVERS(16)
    assert reply.rr == []


def test_two_opt_records_are_formerr(table: DnsTable) -> None:
    packet = query("backend.mesh") + opt_record() + opt_record()
    packet = packet[:10] + b"\x00\x02" + packet[12:]
    assert rcode(table.respond(packet)) == RCODE_FORMERR


def test_opt_with_a_name_is_formerr(table: DnsTable) -> None:
    bad_opt = b"\x01x" + opt_record()[1:]
    packet = query("backend.mesh")[:10] + b"\x00\x01" + query("backend.mesh")[12:] + bad_opt
    assert rcode(table.respond(packet)) == RCODE_FORMERR


def test_opt_options_overrunning_rdata_take_the_slow_path(table: DnsTable) -> None:
    # rdlength 4 but the option inside claims 8 bytes: not parseable by hand.
    broken = b"\x00" + struct.pack(">HHBBHH", 41, 1232, 0, 0, 0, 4) + struct.pack(">HH", 10, 8)
    packet = query("backend.mesh")[:10] + b"\x00\x01" + query("backend.mesh")[12:] + broken
    reply = table.respond(packet)
    assert isinstance(reply, bytes) and reply[:2] == b"\x12\x34"


# --- size limits ------------------------------------------------------------------------------


def test_large_answer_over_udp_without_edns_is_truncated(table: DnsTable) -> None:
    reply = table.respond(query("big.mesh"))
    assert isinstance(reply, bytes) and len(reply) <= 512
    parsed = parse(reply)
    assert parsed.header.tc == 1 and parsed.rr == []
    assert str(parsed.q.qname) == "big.mesh."


def test_large_answer_fits_the_clients_edns_size_or_tcp(table: DnsTable) -> None:
    assert len(a_records(table.respond(query("big.mesh", edns=4096)))) == 60
    assert len(a_records(table.respond(query("big.mesh"), tcp=True))) == 60
    small = parse(table.respond(query("big.mesh", edns=800)))
    assert small.header.tc == 1 and [rr.rtype for rr in small.ar] == [41]


def test_truncate_for_udp_keeps_small_replies_and_cuts_big_ones(table: DnsTable) -> None:
    full = table.respond(query("big.mesh", edns=4096))
    assert isinstance(full, bytes) and len(full) > 512
    assert truncate_for_udp(full, 4096) is full
    cut = truncate_for_udp(full, 512)
    assert len(cut) <= 512 and cut[:2] == full[:2]
    parsed = parse(cut)
    assert parsed.header.tc == 1 and parsed.rr == [] and [rr.rtype for rr in parsed.ar] == [41]
    garbage = b"\x00\x07\x81\x80" + b"\xff" * 700
    assert truncate_for_udp(garbage, 512)[:4] == b"\x00\x07\x83\x80"


def test_error_reply_echoes_question_and_edns() -> None:
    reply = parse(error_reply(query("example.com", qid=99, edns=1232), RCODE_SERVFAIL))
    assert reply.header.id == 99 and reply.header.rcode == RCODE_SERVFAIL
    assert str(reply.q.qname) == "example.com." and [rr.rtype for rr in reply.ar] == [41]
    assert error_reply(b"\x00\x05\x01\x00" + b"\xff" * 9, RCODE_SERVFAIL)[:4] == b"\x00\x05\x81\x82"


# --- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize("packet", [b"", b"\x00", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_packets_without_a_header_are_dropped(table: DnsTable, packet: bytes) -> None:
    assert table.respond(packet) is DROP


def test_responses_are_dropped(table: DnsTable) -> None:
    packet = bytearray(query("backend.mesh"))
    packet[2] |= 0x80
    assert table.respond(bytes(packet)) is DROP


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack(">HHHHHH", 0xBEEF, 0x100, 1, 0, 0, 0),  # header only, question missing
        query("backend.mesh")[:-3],  # question cut short
        struct.pack(">HHHHHH", 0xBEEF, 0x100, 0, 0, 0, 0),  # no question
        struct.pack(">HHHHHH", 0xBEEF, 0x100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # loop
        struct.pack(">HHHHHH", 0xBEEF, 0x100, 1, 0, 0, 0) + b"\x40abc\x00\x00\x01\x00\x01",
        struct.pack(">HHHHHH", 0xBEEF, 0x300, 1, 0, 0, 0) + wire_name("a.mesh") + b"\0\1\0\1",
    ],
)
def test_malformed_queries_get_formerr_or_a_safe_answer(table: DnsTable, packet: bytes) -> None:
    reply = table.respond(packet)
    assert isinstance(reply, bytes)
    assert reply[:2] == packet[:2] and reply[2] & 0x80
    assert reply[3] & 0x0F in (RCODE_FORMERR, RCODE_NOERROR)


def test_two_questions_are_formerr(table: DnsTable) -> None:
    packet = query("backend.mesh") + query("web.mesh")[12:]
    packet = packet[:4] + b"\x00\x02" + packet[6:]
    assert rcode(table.respond(packet)) == RCODE_FORMERR


def test_overlong_name_is_formerr(table: DnsTable) -> None:
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x04mesh\x00"  # 263 bytes
    packet = struct.pack(">HHHHHH", 3, 0x100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    assert rcode(table.respond(packet)) == RCODE_FORMERR


@pytest.mark.parametrize("opcode", [1, 2, 4, 5])
def test_other_opcodes_are_notimp(table: DnsTable, opcode: int) -> None:
    packet = bytearray(query("backend.mesh"))
    packet[2] = (packet[2] & 0x87) | (opcode << 3)
    reply = table.respond(bytes(packet))
    assert isinstance(reply, bytes) and reply[3] & 0x0F == RCODE_NOTIMP
    assert (reply[2] >> 3) & 0x0F == opcode


def test_trailing_bytes_after_the_question_still_answer(table: DnsTable) -> None:
    assert a_records(table.respond(query("backend.mesh") + b"junk")) == ["127.1.0.1"]


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    table = DnsTable(RECORDS, forwarding=True)
    action = table.respond(data)
    assert action is DROP or isinstance(action, Forward | bytes)
    if isinstance(action, bytes):
        assert action[:2] == data[:2] and action[2] & 0x80


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutated_queries_never_raise(data: st.DataObject) -> None:
    table = DnsTable(RECORDS)
    packet = bytearray(query("backend.zone-2.mesh", edns=1232))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(packet) - 1))
        packet[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    action = table.respond(bytes(packet[:cut]))
    assert action is DROP or isinstance(action, bytes)


# --- the hand parser agrees with the dnslib path ----------------------------------------------

NAMES = ["backend.mesh", "backend.zone-2.mesh", "multi.mesh", "nosuch.mesh", "zone-2.mesh", "mesh"]


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from([*NAMES, "example.com"]),
    flips=st.lists(st.booleans(), min_size=30, max_size=30),
    qtype=st.sampled_from(["A", "AAAA", "ANY", "SOA", "TXT"]),
    qid=st.integers(0, 0xFFFF),
    rd=st.booleans(),
    cd=st.booleans(),
    edns=st.one_of(st.none(), st.integers(0, 65535)),
    do=st.booleans(),
)
def test_fast_and_slow_paths_give_the_same_bytes(
    name: str,
    flips: list[bool],
    qtype: str,
    qid: int,
    rd: bool,
    cd: bool,
    edns: int | None,
    do: bool,
) -> None:
    table = DnsTable(RECORDS)
    cased = "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=False))
    packet = query(cased, qtype, qid=qid, rd=rd, cd=cd, edns=edns, do=do)
    fast = table.respond(packet)
    assert fast == table._slow(packet, False)
    assert table.respond(packet) == fast  # and again, from the memo


# --- building tables --------------------------------------------------------------------------


def test_table_rejects_names_outside_its_domain_and_bad_addresses() -> None:
    with pytest.raises(ValueError, match="not under"):
        DnsTable([("backend.example", "127.1.0.1")])
    with pytest.raises(ValueError):
        DnsTable([("backend.mesh", "not-an-ip")])
    with pytest.raises(ValueError, match="1 to 63"):
        DnsTable([("a" * 64 + ".mesh", "127.1.0.1")])


def test_custom_domain() -> None:
    table = DnsTable([("ext.example.com", "10.0.0.1")], domain="example.com")
    assert a_records(table.respond(query("EXT.example.com"))) == ["10.0.0.1"]
    assert rcode(table.respond(query("other.example.com"))) == RCODE_NXDOMAIN
    assert rcode(table.respond(query("backend.mesh"))) == RCODE_REFUSED
    assert "ext.example.com." in table and "other.example.com" not in table


def test_swapping_tables_changes_answers_at_once() -> None:
    current = DnsTable(RECORDS)
    packet = query("backend.mesh")
    assert a_records(current.respond(packet)) == ["127.1.0.1"]
    current = DnsTable([("backend.mesh", "127.1.0.9")])
    assert a_records(current.respond(packet)) == ["127.1.0.9"]


def test_memo_stays_bounded_under_random_casing() -> None:
    table = DnsTable(RECORDS)
    rng = random.Random(1)
    name = "backend.zone-2.mesh"
    for _ in range(MEMO_ENTRIES + 500):
        cased = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
        assert a_records(table.respond(query(cased))) == ["127.1.0.3"]
    assert len(table._memo) <= MEMO_ENTRIES
