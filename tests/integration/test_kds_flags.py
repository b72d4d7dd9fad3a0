"""The KDS TLS and token flags of real global-cp and zone-cp processes: contradictions stop
them at start with the reason; an operator's own certificate, and skip-verify, work."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.pki.server_cert import create_tls_ca, issue_server_cert
from tests.integration.federation_support import (
    FAST_ZONE,
    Cluster,
    Http,
    Node,
    _wait_ready,
    eventually,
    provision_zone,
    zone_token_path,
)
from tests.support import Procs, free_port

pytestmark = pytest.mark.integration


def fails_to_start(procs: Procs, name: str, argv: list[str], fragment: str) -> None:
    proc = procs.start(name, argv)
    code = proc.popen.wait(20)
    assert code in (1, 2), (name, proc.log())
    assert fragment in proc.log(), (name, proc.log())


def test_contradictory_or_missing_flags_stop_the_programs_with_the_reason(
    procs: Procs, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("a.b.c\n")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(create_tls_ca("x").cert_pem)
    zone = [procs.script("zone-cp"), "run", "--zone", "zone-1", "--api-address", "127.0.0.1:0"]
    zone += ["--global-kds", f"grpcs://127.0.0.1:{free_port()}"]
    cases = {
        "no-token": ([], "--global-kds needs --zone-token-file"),
        "empty-token": (["--zone-token-file", str(tmp_path / "ca.crt.missing")], "zone token"),
        "insecure-and-ca": (
            ["--zone-token-file", str(token), "--kds-insecure", "--kds-ca-file", str(ca)],
            "contradicts",
        ),
        "skip-and-ca": (
            ["--zone-token-file", str(token), "--kds-tls-skip-verify", "--kds-ca-file", str(ca)],
            "contradicts",
        ),
        "bad-ca": (["--zone-token-file", str(token), "--kds-ca-file", str(token)], "no PEM"),
    }
    for name, (args, fragment) in cases.items():
        data = ["--data-dir", str(tmp_path / name)]
        fails_to_start(procs, f"zone-{name}", [*zone, *args, *data], fragment)
        assert not (tmp_path / name).exists()  # refused before opening its store

    glob = [procs.script("global-cp"), "run", "--api-address", "127.0.0.1:0"]
    glob += ["--kds-address", "127.0.0.1:0", "--store", "memory"]
    cases = {
        "cert-no-key": (["--kds-tls-cert", str(ca)], "go together"),
        "insecure-and-san": (["--kds-insecure", "--kds-tls-san", "kds.example"], "contradicts"),
        "bad-san": (["--kds-tls-san", "not a host"], "--kds-tls-san"),
        "cert-and-ca-out": (
            ["--kds-tls-cert", str(ca), "--kds-tls-key", str(ca), "--kds-ca-out", str(ca)],
            "--kds-ca-out",
        ),
    }
    for name, (args, fragment) in cases.items():
        fails_to_start(procs, f"global-{name}", [*glob, *args], fragment)


def test_an_operators_certificate_and_skip_verify(procs: Procs, tmp_path: Path) -> None:
    ca = create_tls_ca("operator CA")
    pair = issue_server_cert(ca, ["localhost", "127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    (tmp_path / "operator-ca.crt").write_bytes(ca.cert_pem)
    own = ("--kds-tls-cert", str(tmp_path / "tls.crt"), "--kds-tls-key", str(tmp_path / "tls.key"))
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",), global_args=own)
    # Not the global's own CA: it has none to write with an operator's certificate.
    kds_ca = cluster.glob.argv.index("--kds-ca-out")
    del cluster.glob.argv[kds_ca : kds_ca + 2]
    zone_argv = cluster.zones["zone-1"].argv
    zone_argv[zone_argv.index("--kds-ca-file") + 1] = str(tmp_path / "operator-ca.crt")
    cluster.start()
    cluster.wait_online("zone-1")

    # A zone that checks nothing connects too, and says so at start.
    port = free_port()
    argv = [
        procs.script("zone-cp"),
        "run",
        "--zone",
        "zone-2",
        "--global-kds",
        f"grpcs://127.0.0.1:{cluster.glob.kds_port}",
        "--api-address",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(tmp_path / "zone-2"),
        "--zone-token-file",
        str(zone_token_path(tmp_path, "zone-2")),
        "--kds-tls-skip-verify",
        *FAST_ZONE,
    ]
    provision_zone(tmp_path, cluster.glob.http.port, "zone-2")
    node = Node("zone-2", argv, Http(port), tmp_path / "zone-2")
    node.proc = procs.start("zone-2", argv)
    _wait_ready(node)
    eventually(lambda: node.http.get("/_kds")["state"] == "connected", what="zone-2 connected")
    assert "--kds-tls-skip-verify: the global's certificate is NOT checked" in node.proc.log()
    assert node.http.get("/_kds")["global"].startswith("grpcs://")
