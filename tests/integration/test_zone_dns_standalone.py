"""Zone DNS of a real standalone zone-cp: it survives 10,000 random and truncated packets,
forwards other names to `--dns-upstream`, and refuses to start on a taken address or a bad
range with a message that says what to change."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import DNSRecord

from tests.auth_support import ADMIN_TOKEN_FILE
from tests.integration.federation_support import Http, dataplane
from tests.integration.test_dns_server import dig
from tests.support import Proc, Procs, free_port, wait_until

pytestmark = [
    pytest.mark.integration,
]


def start_zone(procs: Procs, tmp_path: Path, name: str, *extra: str) -> tuple[Proc, Http]:
    api = free_port()
    argv = [procs.script("zone-cp"), "run", "--zone", "zone-1", "--store", "memory"]
    argv += ["--api-address", f"127.0.0.1:{api}", "--data-dir", str(tmp_path / name), *extra]
    token_file = tmp_path / name / ADMIN_TOKEN_FILE  # standalone: the zone's own admin token
    proc = procs.start(name, [*argv, "--admin-token-file", str(token_file)])
    http = Http(api, token_file)
    wait_until(lambda: proc.alive() and http.ready(), timeout=30, what=f"{name} ready")
    return proc, http


@pytest.fixture
def zone(procs: Procs, tmp_path: Path) -> Iterator[tuple[Proc, Http, int]]:
    port = free_port()
    proc, http = start_zone(procs, tmp_path, "zone", "--dns-address", f"127.0.0.1:{port}")
    assert http.get("/")["dns"] == f"127.0.0.1:{port}"
    http.put("/meshes/default/dataplanes/backend-1", dataplane("backend-1", service="backend"))
    wait_until(
        lambda: dig(port, "backend.mesh").status == "NOERROR", timeout=10, what="backend.mesh"
    )
    yield proc, http, port


def packets(rng: random.Random, count: int) -> Iterator[bytes]:
    """Random bytes, truncated queries, and valid queries with bytes flipped."""
    valid = [
        bytes(DNSRecord.question(name, qtype).pack())
        for name in ("backend.mesh", "backend.zone-1.mesh", "nosuch.mesh", "example.com")
        for qtype in ("A", "AAAA", "ANY", "SOA")
    ]
    for i in range(count):
        base = rng.choice(valid)
        kind = i % 3
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:
            yield base[: rng.randrange(0, len(base))]
        else:
            mutated = bytearray(base)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            yield bytes(mutated)


def metric(http: Http, name: str) -> float:
    with urllib.request.urlopen(f"{http.base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_ten_thousand_random_and_truncated_packets_do_not_stop_it(
    zone: tuple[Proc, Http, int],
) -> None:
    proc, http, port = zone
    rng = random.Random(20240501)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for i, packet in enumerate(packets(rng, 10_000)):
            with contextlib.suppress(BlockingIOError):  # a full send buffer: drop it
                sock.sendto(packet, ("127.0.0.1", port))
            if i % 500 == 0:  # keep our receive buffer drained, and check it still answers
                while True:
                    try:
                        sock.recv(65535)
                    except BlockingIOError:
                        break
                assert dig(port, "backend.mesh").status == "NOERROR", f"after {i} packets"
    # TCP: garbage frames, a length that lies, a connection cut mid-frame.
    for packet in packets(rng, 200):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            frame = struct.pack(">H", len(packet)) + packet
            conn.sendall(frame[: rng.randrange(1, len(frame) + 1)])
    for transport in ([], ["+tcp"]):
        answer = dig(port, "backend.mesh", "A", *transport)
        assert answer.status == "NOERROR" and len(answer.addresses) == 1, answer.output
    assert proc.alive()
    assert metric(http, "meshfed_dns_internal_errors_total") == 0
    # Most of the burst reached it (the kernel may drop some), and the garbage was dropped
    # or answered with an error, not with a crash.
    assert metric(http, 'meshfed_dns_queries_total{transport="udp"}') > 5000
    assert metric(http, "meshfed_dns_dropped_total") > 0
    assert http.ready()


def test_other_names_go_to_the_upstream(procs: Procs, tmp_path: Path) -> None:
    table = tmp_path / "upstream.json"
    table.write_text('{"ext.example.com": "10.0.0.1"}')
    upstream_port = free_port()
    upstream = procs.start(
        "upstream",
        [
            sys.executable,
            "-m",
            "zone_cp.dns",
            "--address",
            f"127.0.0.1:{upstream_port}",
            "--table",
            str(table),
            "--domain",
            "example.com",
        ],
    )
    wait_until(
        lambda: upstream.alive() and dig(upstream_port, "ext.example.com").status == "NOERROR",
        timeout=20,
        what="upstream answering",
    )
    port = free_port()
    start_zone(
        procs,
        tmp_path,
        "zone",
        "--dns-address",
        f"127.0.0.1:{port}",
        "--dns-upstream",
        f"127.0.0.1:{upstream_port}",
    )
    forwarded = dig(port, "ext.example.com")
    assert forwarded.status == "NOERROR" and forwarded.addresses == ["10.0.0.1"]
    assert "ra" in forwarded.flags
    assert dig(port, "nosuch.mesh").status == "NXDOMAIN"  # .mesh is never forwarded


def test_a_taken_dns_address_or_a_bad_range_stops_the_start_with_a_reason(
    procs: Procs, tmp_path: Path, zone: tuple[Proc, Http, int]
) -> None:
    _, _, taken = zone
    api = free_port()
    busy = procs.start(
        "busy",
        [
            procs.script("zone-cp"),
            "run",
            "--zone",
            "zone-2",
            "--store",
            "memory",
            "--api-address",
            f"127.0.0.1:{api}",
            "--dns-address",
            f"127.0.0.1:{taken}",
        ],
    )
    assert busy.popen.wait(20) == 1, busy.log()
    assert f"cannot serve DNS on 127.0.0.1:{taken}" in busy.log()
    assert "--dns-address" in busy.log()
    for bad, reason in (("127.1.0.1/16", "host bits"), ("10.0.0.0/31", "too small")):
        proc = procs.start(
            f"cidr-{bad}".replace("/", "_"),
            [procs.script("zone-cp"), "run", "--zone", "zone-2", "--vip-cidr", bad],
        )
        assert proc.popen.wait(20) == 2, proc.log()
        assert "--vip-cidr" in proc.log() and reason in proc.log()
