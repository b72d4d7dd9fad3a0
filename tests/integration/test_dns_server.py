"""The standalone zone DNS runner as a real process, queried with `dig` over UDP and TCP."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import Proc, Procs, free_port, wait_until

pytestmark = [
    pytest.mark.integration,
]

HOST = "127.0.0.1"
TABLE = {
    "backend.mesh": "127.1.0.1",
    "web.mesh": "127.1.0.2",
    "backend.zone-2.mesh": "127.1.0.3",
}
UPSTREAM_TABLE = {
    "ext.example.com": "10.0.0.1",
    "big.example.com": [f"10.0.1.{i}" for i in range(1, 101)],  # ~1.6 kB: over 512 and 1232
}


@dataclass
class Answer:
    status: str
    flags: set[str]
    records: list[str]  # "name ttl type value"
    output: str

    @property
    def addresses(self) -> list[str]:
        return [r.split()[-1] for r in self.records if r.split()[3] == "A"]


def dig(port: int, name: str, qtype: str = "A", *options: str, host: str = HOST) -> Answer:
    result = subprocess.run(
        ["dig", f"@{host}", "-p", str(port), name, qtype, "+time=2", "+tries=1", *options],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = result.stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    answer = out.split(";; ANSWER SECTION:\n")
    records = []
    if len(answer) > 1:
        records = [" ".join(line.split()) for line in answer[-1].split("\n\n")[0].splitlines()]
    return Answer(
        status=status.group(1) if status else "NO-REPLY",
        flags=set(flags.group(1).split()) if flags else set(),
        records=records,
        output=out + result.stderr,
    )


def start_runner(
    procs: Procs,
    tmp_path: Path,
    name: str,
    table: Mapping[str, object],
    *extra: str,
    ready_name: str | None = None,
) -> tuple[Proc, int, Path]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(table))
    port = free_port(HOST)
    argv = [
        sys.executable,
        "-m",
        "zone_cp.dns",
        "--address",
        f"{HOST}:{port}",
        "--table",
        str(path),
    ]
    proc = procs.start(name, [*argv, *extra])
    probe = ready_name or next(iter(table))
    wait_until(
        lambda: proc.alive() and dig(port, probe).status == "NOERROR",
        timeout=20,
        what=f"{name} answering {probe}",
    )
    return proc, port, path


@pytest.fixture(params=["batch", "asyncio"])
def zone_dns(
    procs: Procs, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Proc, int, Path]:
    """A runner over TABLE, once with each UDP receive path."""
    return start_runner(procs, tmp_path, "zone-dns", dict(TABLE), "--udp-io", request.param)


def test_answers_over_udp_and_tcp(zone_dns: tuple[Proc, int, Path]) -> None:
    _, port, _ = zone_dns
    for transport in ([], ["+tcp"]):
        a = dig(port, "backend.mesh", "A", *transport)
        assert a.status == "NOERROR" and a.addresses == ["127.1.0.1"], a.output
        assert a.records[0].split()[1] == "30"  # TTL
        assert "aa" in a.flags
        pinned = dig(port, "BACKEND.Zone-2.MESH", "A", *transport)
        assert pinned.addresses == ["127.1.0.3"], pinned.output
        aaaa = dig(port, "backend.mesh", "AAAA", *transport)
        assert aaaa.status == "NOERROR" and aaaa.records == [], aaaa.output
        nx = dig(port, "nosuch.mesh", "A", *transport)
        assert nx.status == "NXDOMAIN", nx.output
        refused = dig(port, "example.com", "A", *transport)
        assert refused.status == "REFUSED", refused.output


def test_edns_and_no_edns(zone_dns: tuple[Proc, int, Path]) -> None:
    _, port, _ = zone_dns
    plain = dig(port, "web.mesh", "A", "+noedns")
    assert plain.addresses == ["127.1.0.2"] and "OPT PSEUDOSECTION" not in plain.output
    edns = dig(port, "web.mesh", "A", "+dnssec", "+bufsize=4096")
    assert edns.addresses == ["127.1.0.2"]
    assert re.search(r"EDNS: version: 0, flags: do; udp: 1232", edns.output), edns.output


def test_table_reload_on_sighup(zone_dns: tuple[Proc, int, Path]) -> None:
    proc, port, path = zone_dns
    path.write_text(json.dumps({**TABLE, "backend.mesh": "127.1.0.99", "new.mesh": "127.1.0.4"}))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: dig(port, "new.mesh").addresses == ["127.1.0.4"], what="new name")
    assert dig(port, "backend.mesh").addresses == ["127.1.0.99"]
    path.write_text("{not json")
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "table not reloaded" in proc.log(), what="reload error logged")
    assert dig(port, "new.mesh").addresses == ["127.1.0.4"] and proc.alive()


def test_forwarding_to_an_upstream(procs: Procs, tmp_path: Path) -> None:
    _, up_port, _ = start_runner(
        procs, tmp_path, "upstream", UPSTREAM_TABLE, "--domain", "example.com"
    )
    _, port, _ = start_runner(
        procs, tmp_path, "zone-dns", dict(TABLE), "--upstream", f"{HOST}:{up_port}"
    )
    for transport in ([], ["+tcp"]):
        ext = dig(port, "ext.example.com", "A", *transport)
        assert ext.status == "NOERROR" and ext.addresses == ["10.0.0.1"], ext.output
        assert "ra" in ext.flags
        assert dig(port, "nosuch.example.com", "A", *transport).status == "NXDOMAIN"
        assert dig(port, "backend.mesh", "A", *transport).addresses == ["127.1.0.1"]


def test_large_forwarded_answer_sets_tc_and_dig_retries_over_tcp(
    procs: Procs, tmp_path: Path
) -> None:
    _, up_port, _ = start_runner(
        procs, tmp_path, "upstream", UPSTREAM_TABLE, "--domain", "example.com"
    )
    _, port, _ = start_runner(
        procs, tmp_path, "zone-dns", dict(TABLE), "--upstream", f"{HOST}:{up_port}"
    )
    for options in (["+noedns"], ["+bufsize=1232"]):
        truncated = dig(port, "big.example.com", "A", "+ignore", *options)
        assert "tc" in truncated.flags and truncated.records == [], truncated.output
        retried = dig(port, "big.example.com", "A", *options)
        assert "Truncated, retrying in TCP mode" in retried.output
        assert len(retried.addresses) == 100, retried.output


def test_silent_upstream_gives_servfail(procs: Procs, tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    try:
        up_port = silent.getsockname()[1]
        _, port, _ = start_runner(
            procs,
            tmp_path,
            "zone-dns",
            dict(TABLE),
            "--upstream",
            f"{HOST}:{up_port}",
            "--upstream-timeout",
            "0.3",
        )
        assert dig(port, "example.com").status == "SERVFAIL"
        assert dig(port, "example.com", "A", "+tcp").status == "SERVFAIL"
    finally:
        silent.close()


def test_metrics_endpoint(procs: Procs, tmp_path: Path) -> None:
    metrics_port = free_port(HOST)
    _, port, _ = start_runner(
        procs, tmp_path, "zone-dns", dict(TABLE), "--metrics-address", f"{HOST}:{metrics_port}"
    )
    dig(port, "nosuch.mesh")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://{HOST}:{metrics_port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())

    text = wait_until(scrape, what="metrics endpoint")
    assert 'meshfed_dns_responses_total{rcode="NXDOMAIN"} 1.0' in text
    assert "meshfed_dns_names 3.0" in text


def children_of(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_workers_share_the_port(procs: Procs, tmp_path: Path) -> None:
    proc, port, path = start_runner(procs, tmp_path, "zone-dns", dict(TABLE), "--workers", "2")
    workers = wait_until(lambda: len(children_of(proc.pid)) == 2 and children_of(proc.pid))
    # Each dig uses a new source port, so the kernel spreads these over both workers.
    for transport in ([], ["+tcp"]):
        for _ in range(10):
            assert dig(port, "web.mesh", "A", *transport).addresses == ["127.1.0.2"]
    path.write_text(json.dumps({**TABLE, "web.mesh": "127.1.0.42"}))
    proc.signal(signal.SIGHUP)  # relayed to every worker

    def all_reloaded() -> bool:
        return all(dig(port, "web.mesh").addresses == ["127.1.0.42"] for _ in range(20))

    wait_until(all_reloaded, what="every worker answering from the new table")
    assert proc.stop() == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_configuration_fails_clearly(procs: Procs, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"backend.example": "127.1.0.1"}))
    argv = [sys.executable, "-m", "zone_cp.dns", "--address", f"{HOST}:{free_port()}"]
    proc = procs.start("bad-table", [*argv, "--table", str(bad)])
    assert wait_until(lambda: proc.popen.poll() is not None, what="exit") is not None
    assert proc.popen.returncode == 2 and "not under the 'mesh' domain" in proc.log()
    proc = procs.start("bad-address", [*argv[:-1], "127.0.0.1:notaport", "--table", str(bad)])
    wait_until(lambda: proc.popen.poll() is not None, what="exit")
    assert proc.popen.returncode == 2 and "port must be 1-65535" in proc.log()


# --- fuzz -------------------------------------------------------------------------------------


def _valid_query(rng: random.Random) -> bytes:
    name = rng.choice(["backend.mesh", "web.mesh", "nosuch.mesh", "example.com", "mesh"])
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    qtype = rng.choice([1, 28, 255, 16, 6])
    packet = struct.pack(">HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 0)
    return packet + labels + struct.pack(">HH", qtype, 1)


def _fuzz_packet(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return rng.randbytes(rng.randint(0, 600))
    packet = bytearray(_valid_query(rng))
    if kind < 0.6:
        return bytes(packet[: rng.randint(0, len(packet))])  # truncated
    for _ in range(rng.randint(1, 6)):  # mutated header bits, lengths, counts
        packet[rng.randrange(len(packet))] = rng.getrandbits(8)
    if rng.random() < 0.3:
        packet += rng.randbytes(rng.randint(1, 40))
    return bytes(packet)


def test_fuzzed_packets_never_stop_the_server(zone_dns: tuple[Proc, int, Path]) -> None:
    proc, port, _ = zone_dns
    rng = random.Random(20240601)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, port))
    sock.settimeout(2)
    replies = 0
    try:
        for i in range(10_000):
            try:
                sock.send(_fuzz_packet(rng))
            except ConnectionRefusedError:
                pytest.fail(f"server stopped listening after {i} packets:\n{proc.log()}")
            if i % 50 == 49:
                # A valid query now and then must still be answered; waiting for it also paces
                # the sender so the socket buffer is not what is being tested.
                probe = _valid_query(rng)
                sock.send(probe)
                while True:
                    try:
                        reply = sock.recv(4096)
                    except TimeoutError:
                        pytest.fail(f"no answer to a valid query after {i} packets")
                    replies += 1
                    if reply[:2] == probe[:2] and reply[2] & 0x80:
                        break
    finally:
        sock.close()

    for _ in range(200):  # and over TCP: junk frames, lying lengths, abrupt closes
        with socket.create_connection((HOST, port), timeout=2) as tcp:
            payload = _fuzz_packet(rng)
            if rng.random() < 0.5:
                tcp.sendall(struct.pack(">H", len(payload)) + payload)
            else:
                tcp.sendall(struct.pack(">H", rng.randint(0, 65535)) + payload)

    assert proc.alive(), proc.log()
    assert replies > 200
    for transport in ([], ["+tcp"]):
        a = dig(port, "backend.mesh", "A", *transport)
        assert a.status == "NOERROR" and a.addresses == ["127.1.0.1"], a.output
    assert dig(port, "nosuch.mesh").status == "NXDOMAIN"
    assert "Traceback" not in proc.log()
