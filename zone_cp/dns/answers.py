"""The `.mesh` resolver's answer logic: pure, precomputed, and the hot path of zone DNS.

A `DnsTable` is immutable. Every answer it can give for a known name is built once, at
construction, as wire bytes minus the two parts that vary per query: the query ID and the
question (echoed with the client's casing, which some resolvers check). `respond()` parses the
header and question of an ordinary query by hand and glues those pieces together, so a known
name costs a few slices and a dict lookup, with no record objects. Anything unusual (several
questions, name compression in a query, other opcodes, odd EDNS) takes the slow path, which
parses with dnslib and then shares the same precomputed bodies.

When the catalog changes the owner builds a new table and replaces its reference: readers never
see a half-updated table and no lock is needed.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import Final

from dnslib import DNSRecord

DEFAULT_DOMAIN: Final = "mesh"
DEFAULT_TTL: Final = 30
# Advertised in our OPT records: the DNS Flag Day 2020 size that avoids IP fragmentation.
EDNS_UDP_SIZE: Final = 1232
CLASSIC_UDP_SIZE: Final = 512

QTYPE_A: Final = 1
QTYPE_SOA: Final = 6
QTYPE_OPT: Final = 41
QTYPE_ANY: Final = 255
QCLASS_IN: Final = 1
QCLASS_ANY: Final = 255

RCODE_NOERROR: Final = 0
RCODE_FORMERR: Final = 1
RCODE_SERVFAIL: Final = 2
RCODE_NXDOMAIN: Final = 3
RCODE_NOTIMP: Final = 4
RCODE_REFUSED: Final = 5

_PLAIN_COUNTS: Final = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # one question, nothing else
_EDNS_COUNTS: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # one question and one OPT
_MAX_NAME: Final = 255
_RR_FIXED: Final = struct.Struct(">HHIH")  # type, class, ttl, rdlength
# Bodies longer than this may push a UDP answer past 512 bytes, so respond() measures them.
_LARGE_BODY: Final = CLASSIC_UDP_SIZE - 12 - (_MAX_NAME + 4) - 11
# Replies remembered per table (a few MB at most); see DnsTable.respond.
MEMO_ENTRIES: Final = 16384


class Forward:
    """Action: the name is outside our domain; send the query to the upstream resolver.

    `udp_size` is what the client can take over UDP (512, or its EDNS size), which the server
    needs when relaying the upstream's answer.
    """

    __slots__ = ("udp_size",)

    def __init__(self, udp_size: int) -> None:
        self.udp_size = udp_size

    def __repr__(self) -> str:
        return f"Forward(udp_size={self.udp_size})"


class Drop:
    """Action: send nothing (unreadable packets, and responses that could echo forever)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = Drop()
Action = bytes | Forward | Drop


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of a dotted name; ValueError when DNS cannot carry it."""
    text = name.rstrip(".")
    if not text:
        return b"\x00"
    out = bytearray()
    for label in text.split("."):
        try:
            raw = label.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"name {name!r}: labels must be ASCII") from None
        if not 1 <= len(raw) <= 63:
            raise ValueError(f"name {name!r}: every label needs 1 to 63 characters")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > _MAX_NAME:
        raise ValueError(f"name {name!r} is longer than 255 bytes on the wire")
    return bytes(out)


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + _RR_FIXED.pack(rtype, QCLASS_IN, ttl, len(rdata)) + rdata


def _opt_rr(do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT record: root owner, advertised UDP size, version 0, DO echoed (RFC 3225)."""
    flags = 0x8000 if do else 0
    return b"\x00" + struct.pack(">HHBBHH", QTYPE_OPT, EDNS_UDP_SIZE, ext_rcode, 0, flags, 0)


# Index = (query has EDNS) + (DO set): what follows the answer body.
_OPT_TAILS: Final = (b"", _opt_rr(False), _opt_rr(True))


def _heads(rcode: int, aa: bool, ra: bool, an: int, ns: int) -> tuple[bytes, ...]:
    """Flags and counts for the 8 combinations of the query's RD, CD and EDNS bits.

    Index = RD | CD << 1 | EDNS << 2. RD and CD are copied from the query (RFC 1035, 6840);
    AD is never set because nothing here is DNSSEC-validated.
    """
    heads = []
    for variant in range(8):
        b2 = 0x80 | (0x04 if aa else 0) | (variant & 1)
        b3 = (0x80 if ra else 0) | (0x10 if variant & 2 else 0) | rcode
        heads.append(struct.pack(">BBHHHH", b2, b3, 1, an, ns, 1 if variant & 4 else 0))
    return tuple(heads)


class _Answer:
    """One precomputed reply shape: header variants plus the records after the question."""

    __slots__ = ("body", "heads", "large")

    def __init__(self, heads: tuple[bytes, ...], body: bytes) -> None:
        self.heads = heads
        self.body = body
        self.large = len(body) > _LARGE_BODY


def _tail_index(edns: bool, do: bool) -> int:
    return (1 + do) if edns else 0


def _header_only(data: bytes, rcode: int, ra: bool) -> bytes:
    """A reply with the query's ID, opcode and RD and no sections (FORMERR, NOTIMP)."""
    b2 = 0x80 | (data[2] & 0x79)
    b3 = (0x80 if ra else 0) | rcode
    return data[:2] + bytes((b2, b3)) + b"\x00" * 8


def truncate_for_udp(reply: bytes, limit: int) -> bytes:
    """`reply` if it fits in `limit` bytes, else header + question (+ OPT) with TC set.

    TC tells the client to ask again over TCP, where the full answer fits.
    """
    if len(reply) <= limit:
        return reply
    try:
        rec = DNSRecord.parse(reply)
        opts = [rr for rr in rec.ar if rr.rtype == QTYPE_OPT][:1]
        out = DNSRecord(header=rec.header, questions=rec.questions, ar=opts)
        out.header.tc = 1
        packed = bytes(out.pack())
        if len(packed) <= limit:
            return packed
    except Exception:  # dnslib raises several types on bad upstream data; fall through
        pass
    if len(reply) < 12:
        return reply[:limit]
    return reply[:2] + bytes((reply[2] | 0x02, reply[3])) + b"\x00" * 8


def error_reply(query: bytes, rcode: int, ra: bool = True) -> bytes:
    """A reply with `rcode` echoing the query's question and EDNS (e.g. SERVFAIL on timeout)."""
    try:
        rec = DNSRecord.parse(query)
        if len(rec.questions) != 1:
            raise ValueError("not one question")
        q = rec.q
        question = _encode_labels(q.qname.label) + struct.pack(">HH", q.qtype, q.qclass)
        opts = [rr for rr in rec.ar if rr.rtype == QTYPE_OPT]
    except Exception:  # unreadable question: the header alone still tells the client
        return _header_only(query, rcode, ra)
    edns = bool(opts)
    do = bool(opts and opts[0].ttl & 0x8000)
    variant = (query[2] & 1) | ((query[3] & 0x10) >> 3) | (4 if edns else 0)
    head = _heads(rcode, False, ra, 0, 0)[variant]
    return query[:2] + head + question + _OPT_TAILS[_tail_index(edns, do)]


def _encode_labels(labels: tuple[bytes, ...]) -> bytes:
    out = bytearray()
    for label in labels:
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out)


class DnsTable:
    """Immutable name → IPv4 table for one DNS domain, answering queries as wire bytes.

    `records` are (fqdn, ipv4) pairs; a name given several times answers with several A
    records. Names are case-insensitive and must lie under `domain`. With `forwarding`, names
    outside the domain are handed to the upstream (and replies advertise recursion);
    otherwise they are REFUSED.
    """

    __slots__ = (
        "_also",
        "_forwarding",
        "_memo",
        "_names",
        "_nx",
        "_refused",
        "_soa_body",
        "_suffix",
        "domain",
        "size",
    )

    def __init__(
        self,
        records: Iterable[tuple[str, str]],
        *,
        domain: str = DEFAULT_DOMAIN,
        forwarding: bool = False,
        ttl: int = DEFAULT_TTL,
        serial: int = 1,
        also: DnsTable | None = None,
    ) -> None:
        """`also`: the table of another domain (MeshService hostnames under `mesh.local`,
        issue 17), which answers the names under it."""
        self._also = also
        self.domain = domain.strip(".").lower()
        self._suffix = encode_name(self.domain)
        self._forwarding = forwarding
        ra = forwarding  # we recurse (via the upstream) exactly when we forward
        self._soa_body = self._soa_rr(self._suffix, ttl, serial)

        ips: dict[bytes, list[bytes]] = {}
        for fqdn, ip in records:
            key = encode_name(fqdn.lower())
            if not self._is_under(key):
                raise ValueError(f"name {fqdn!r} is not under the {self.domain!r} domain")
            packed = ipaddress.IPv4Address(ip).packed
            addrs = ips.setdefault(key, [])
            if packed not in addrs:
                addrs.append(packed)
        self.size: int = len(ips) + (also.size if also is not None else 0)

        nodata = _Answer(_heads(RCODE_NOERROR, True, ra, 0, 1), self._soa_body)
        shared_heads: dict[int, tuple[bytes, ...]] = {}
        names: dict[bytes, tuple[dict[int, _Answer], _Answer]] = {}
        for key, addrs in ips.items():
            count = len(addrs)
            if count not in shared_heads:
                shared_heads[count] = _heads(RCODE_NOERROR, True, ra, count, 0)
            body = b"".join(_rr(b"\xc0\x0c", QTYPE_A, ttl, a) for a in addrs)
            a_answer = _Answer(shared_heads[count], body)
            names[key] = ({QTYPE_A: a_answer, QTYPE_ANY: a_answer}, nodata)
        # Names between a record and the apex exist without data (RFC 8020): `zone-2.mesh`
        # must not be NXDOMAIN while `backend.zone-2.mesh` resolves.
        for key in list(ips):
            pos = key[0] + 1
            while pos < len(key) - len(self._suffix):
                names.setdefault(key[pos:], ({}, nodata))
                pos += key[pos] + 1
        apex_soa = _Answer(
            _heads(RCODE_NOERROR, True, ra, 1, 0), self._soa_rr(b"\xc0\x0c", ttl, serial)
        )
        apex_types = names[self._suffix][0] if self._suffix in names else {}
        names[self._suffix] = ({**apex_types, QTYPE_SOA: apex_soa}, nodata)
        self._names = names
        self._nx = _heads(RCODE_NXDOMAIN, True, ra, 0, 1)
        self._refused = _heads(RCODE_REFUSED, False, ra, 0, 0)
        self._memo: dict[bytes, bytes] = {}

    def _soa_rr(self, owner: bytes, ttl: int, serial: int) -> bytes:
        """SOA of the domain; its minimum (= TTL) bounds how long NXDOMAIN is cached.

        The names inside are written uncompressed so the record is the same whatever the
        question looks like.
        """
        rdata = (
            b"\x02ns"
            + self._suffix
            + b"\x0ahostmaster"
            + self._suffix
            + struct.pack(">IIIII", serial & 0xFFFFFFFF, 3600, 600, 86400, ttl)
        )
        return _rr(owner, QTYPE_SOA, ttl, rdata)

    def _is_under(self, key: bytes) -> bool:
        """Whether wire name `key` ends with our domain on a label boundary."""
        suffix = self._suffix
        if not key.endswith(suffix):
            return False
        target = len(key) - len(suffix)
        pos = 0
        while pos < target:
            pos += key[pos] + 1
        return pos == target

    def __contains__(self, name: str) -> bool:
        try:
            return encode_name(name.lower()) in self._names
        except ValueError:
            return False

    def respond(self, data: bytes, tcp: bool = False) -> Action:
        """The action for one query packet. Never raises.

        Over UDP (`tcp` false) an answer larger than the client accepts is cut to its header
        and question with TC set.
        """
        # A reply depends only on the bytes after the query ID (and on this table), so a
        # query seen before is answered with one lookup and one concatenation.
        cached = self._memo.get(data[2:])
        if cached is not None:
            return data[:2] + cached
        return self._respond(data, tcp)

    def _remember(self, data: bytes, reply: bytes) -> bytes:
        memo = self._memo
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()  # bounded: odd casings or random junk cannot grow it without limit
        memo[data[2:]] = reply[2:]
        return reply

    def _respond(self, data: bytes, tcp: bool) -> Action:
        """The hand parser: header and question of an ordinary query, known names inline."""
        n = len(data)
        if n < 12 or data[2] & 0x80:
            return DROP  # no header to answer to, or a response (answering could loop)
        counts = data[4:12]
        # QR=0, opcode QUERY, TC clear, exactly one question and at most one extra record.
        if data[2] & 0x7A or (counts != _PLAIN_COUNTS and counts != _EDNS_COUNTS):
            return self._slow(data, tcp)
        try:
            pos = 12
            length = data[12]
            while length:
                if length > 63:
                    return self._slow(data, tcp)  # compression pointer or reserved bits
                pos += length + 1
                length = data[pos]
            qend = pos + 1
            if qend - 12 > _MAX_NAME or data[qend + 2] != 0 or data[qend + 3] != QCLASS_IN:
                return self._slow(data, tcp)
            qtype = (data[qend] << 8) | data[qend + 1]
            end = qend + 4
            if data[11] == 0:
                if n != end:
                    return self._slow(data, tcp)
                edns = 0
                tail = 0
                limit = CLASSIC_UDP_SIZE
            else:
                # OPT: root name, type 41, class = UDP size, ttl = ext-rcode/version/flags.
                if data[end] != 0 or data[end + 1] != 0 or data[end + 2] != QTYPE_OPT:
                    return self._slow(data, tcp)
                if data[end + 6] != 0:
                    return self._slow(data, tcp)  # EDNS version other than 0
                stop = end + 11 + ((data[end + 9] << 8) | data[end + 10])
                if stop != n:
                    return self._slow(data, tcp)
                opt = end + 11
                while opt < stop:  # options are TLVs; we read none but they must fit
                    opt += 4 + ((data[opt + 2] << 8) | data[opt + 3])
                if opt != stop:
                    return self._slow(data, tcp)
                edns = 4
                tail = 2 if data[end + 7] & 0x80 else 1
                limit = max(CLASSIC_UDP_SIZE, (data[end + 3] << 8) | data[end + 4])
        except IndexError:
            return self._slow(data, tcp)
        variant = (data[2] & 1) | ((data[3] & 0x10) >> 3) | edns
        entry = self._names.get(data[12:qend].lower())
        if entry is None:
            also = self._also
            if also is not None and also._is_under(data[12:qend].lower()):
                return also._respond(data, tcp)
            action = self._miss(data, data[12:end], data[12:qend].lower(), variant, tail, limit)
            return self._remember(data, action) if type(action) is bytes else action
        answer = entry[0].get(qtype, entry[1])
        reply = b"".join(
            (data[:2], answer.heads[variant], data[12:end], answer.body, _OPT_TAILS[tail])
        )
        if answer.large:
            return reply if tcp else truncate_for_udp(reply, limit)
        return self._remember(data, reply)

    def _miss(
        self, data: bytes, question: bytes, key: bytes, variant: int, tail: int, limit: int
    ) -> Action:
        """A name we hold no entry for: NXDOMAIN inside the domain, else forward or refuse."""
        if self._is_under(key):
            return b"".join(
                (data[:2], self._nx[variant], question, self._soa_body, _OPT_TAILS[tail])
            )
        if self._forwarding:
            return Forward(limit)
        return b"".join((data[:2], self._refused[variant], question, _OPT_TAILS[tail]))

    def _slow(self, data: bytes, tcp: bool) -> Action:
        """Everything the hand parser declines: parse with dnslib, then answer the same way."""
        try:
            rec = DNSRecord.parse(data)
        except Exception:  # dnslib raises DNSError, struct.error, ... on garbage
            return _header_only(data, RCODE_FORMERR, self._forwarding)
        header = rec.header
        if header.opcode != 0:
            return _header_only(data, RCODE_NOTIMP, self._forwarding)
        if len(rec.questions) != 1 or header.tc:
            return _header_only(data, RCODE_FORMERR, self._forwarding)
        opts = [rr for rr in rec.ar if rr.rtype == QTYPE_OPT]
        if len(opts) > 1 or (opts and opts[0].rname.label):
            return _header_only(data, RCODE_FORMERR, self._forwarding)  # RFC 6891 section 6.1.1
        q = rec.q
        labels: tuple[bytes, ...] = q.qname.label
        name = _encode_labels(labels)
        if len(name) > _MAX_NAME:
            return _header_only(data, RCODE_FORMERR, self._forwarding)
        question = name + struct.pack(">HH", q.qtype, q.qclass)
        edns = bool(opts)
        do = bool(edns and opts[0].ttl & 0x8000)
        variant = (data[2] & 1) | ((data[3] & 0x10) >> 3) | (4 if edns else 0)
        tail = _tail_index(edns, do)
        if edns and (opts[0].ttl >> 16) & 0xFF:
            # Unknown EDNS version: BADVERS (16) = extended rcode 1, header rcode 0.
            head = _heads(RCODE_NOERROR, False, self._forwarding, 0, 0)[variant]
            return data[:2] + head + question + _opt_rr(do, ext_rcode=1)
        limit = max(CLASSIC_UDP_SIZE, opts[0].rclass) if edns else CLASSIC_UDP_SIZE
        key = _encode_labels(tuple(label.lower() for label in labels))
        if self._also is not None and self._also._is_under(key):
            return self._also._slow(data, tcp)
        if q.qclass not in (QCLASS_IN, QCLASS_ANY):
            if key in self._names or self._is_under(key):
                return b"".join((data[:2], self._refused[variant], question, _OPT_TAILS[tail]))
            return self._miss(data, question, key, variant, tail, limit)
        entry = self._names.get(key)
        if entry is None:
            return self._miss(data, question, key, variant, tail, limit)
        answer = entry[0].get(q.qtype, entry[1])
        reply = b"".join((data[:2], answer.heads[variant], question, answer.body, _OPT_TAILS[tail]))
        return reply if tcp else truncate_for_udp(reply, limit)
