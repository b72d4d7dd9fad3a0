"""Hand-built DNS queries for the DNS tests: exact bytes, independent of the code under test."""

from __future__ import annotations

import struct

from dnslib import DNSRecord

QTYPES = {"A": 1, "NS": 2, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}


def wire_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def opt_record(size: int = 1232, do: bool = False, version: int = 0, options: bytes = b"") -> bytes:
    flags = 0x8000 if do else 0
    return b"\x00" + struct.pack(">HHBBHH", 41, size, 0, version, flags, len(options)) + options


def query(
    name: str,
    qtype: str | int = "A",
    *,
    qid: int = 0x1234,
    qclass: int = 1,
    rd: bool = True,
    cd: bool = False,
    ad: bool = False,
    edns: int | None = None,
    do: bool = False,
    options: bytes = b"",
) -> bytes:
    """A standard query; with `edns`, one OPT record advertising that UDP size."""
    code = QTYPES[qtype] if isinstance(qtype, str) else qtype
    flags = (0x0100 if rd else 0) | (0x0010 if cd else 0) | (0x0020 if ad else 0)
    arcount = 0 if edns is None else 1
    packet = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, arcount)
    packet += wire_name(name) + struct.pack(">HH", code, qclass)
    if edns is not None:
        packet += opt_record(edns, do, options=options)
    return packet


def parse(reply: object) -> DNSRecord:
    assert isinstance(reply, bytes), f"expected an answer, got {reply!r}"
    return DNSRecord.parse(reply)


def a_records(reply: object) -> list[str]:
    return [str(rr.rdata) for rr in parse(reply).rr if rr.rtype == 1]
