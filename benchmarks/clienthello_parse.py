"""Cost of one ClientHello parse in the zone ingress's parser, in microseconds.

    .venv/bin/python benchmarks/clienthello_parse.py [--number 20000] [--repeat 5]

The hellos are real first flights of Python's ssl (OpenSSL) client, captured through a memory
BIO as a sidecar would send them: SNI, ALPN h2 + http/1.1, TLS 1.3 key shares. Each case times
`ClientHelloParser().feed(...)` the way the ingress calls it (a new parser per connection), and
reports the minimum over `--repeat` runs of `--number` parses: the minimum is the run least
disturbed by the rest of the machine. Cases:

- whole: the hello arrives in one read (the common case behind a sidecar);
- split: the same bytes in two reads, cut inside the extensions;
- records: the handshake message fragmented into 3 TLS records, in one read.

Not a test: it prints one line per case and a JSON line, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import struct
import timeit

from meshfed.proxy.clienthello import NEED_MORE, ClientHello, ClientHelloParser

SNI = "backend.default.svc.80.mesh.sni.mesh"


def real_hello(sni: str) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def fragmented(hello: bytes, parts: int) -> bytes:
    """The same handshake message re-framed into `parts` records."""
    payload = hello[5:]
    size = -(-len(payload) // parts)
    out = bytearray()
    for pos in range(0, len(payload), size):
        chunk = payload[pos : pos + size]
        out += struct.pack("!BHH", 0x16, 0x0301, len(chunk)) + chunk
    return bytes(out)


def parse_whole(data: bytes) -> ClientHello:
    result = ClientHelloParser().feed(data)
    assert isinstance(result, ClientHello)
    return result


def parse_split(first: bytes, second: bytes) -> ClientHello:
    parser = ClientHelloParser()
    assert parser.feed(first) is NEED_MORE
    result = parser.feed(second)
    assert isinstance(result, ClientHello)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--number", type=int, default=20000, help="parses per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the minimum is reported")
    args = ap.parse_args()

    hello = real_hello(SNI)
    cut = len(hello) - 100
    framed = fragmented(hello, 3)
    assert parse_whole(hello).sni == SNI
    assert parse_split(hello[:cut], hello[cut:]) == parse_whole(hello)
    assert parse_whole(framed).sni == SNI

    cases = {
        "whole": lambda: parse_whole(hello),
        "split": lambda: parse_split(hello[:cut], hello[cut:]),
        "records": lambda: parse_whole(framed),
    }
    results: dict[str, float] = {}
    print(f"hello: {len(hello)} bytes; {args.number} parses x {args.repeat} runs, min")
    for name, fn in cases.items():
        best = min(timeit.repeat(fn, number=args.number, repeat=args.repeat))
        results[name] = round(best / args.number * 1e6, 2)
        print(f"{name:8} {results[name]:8.2f} us/parse")
    print(json.dumps({"hello_bytes": len(hello), "us_per_parse": results}))


if __name__ == "__main__":
    main()
