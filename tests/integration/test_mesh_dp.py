"""mesh-dp end to end with real processes: sidecars, zone ingresses and echo applications on
loopback, configured from resources through meshfed.dpconfig.build (static config files),
with certificates from a real mesh CA.

The test process plays web's application: it connects to web's outbound listener on the
backend VIP, exactly as an application that resolved `backend.mesh` would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import msgspec
import pytest
from cryptography import x509

from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.leaf import issue_leaf
from meshfed.pki.tls import client_context
from meshfed.resources.model import Resource
from tests.integration.test_mesh_dp_support import (
    Launcher,
    Scenario,
    closed_without_data,
    http_get,
    outbound,
    recv_line,
)
from tests.support import Procs, free_port, wait_until
from tests.unit.policy.factories import MESH_REF, frm, mtp, policy, svc, to

pytestmark = pytest.mark.integration


def test_cross_zone_through_the_ingress(procs: Procs, tmp_path: Path) -> None:
    """web (zone-1) -> web sidecar -> zone-2 ingress -> backend sidecar -> backend app."""
    s = Scenario()
    web = s.add_instance("web-1", "zone-1", "web")
    backends = [s.add_instance(f"backend-z2-{i}", "zone-2", "backend") for i in (1, 2)]
    spot = s.add_ingress("zone-2")
    run = Launcher(procs, tmp_path)
    for b in backends:
        run.echo(b)
    backend_sidecars = [run.sidecar(b.name, s.callee_config(b)) for b in backends]
    ingress = run.ingress(spot, s.ingress_config("zone-2"))
    web_config = s.sidecar_config(web)
    web_sidecar = run.sidecar("web-1", web_config)
    out = outbound(web_config, "backend")
    assert [e.via_ingress for e in out.endpoints] == [True]

    answers = [http_get(out.address, out.port) for _ in range(100)]

    assert all(status == 200 for status, _ in answers)
    assert {body["zone"] for _, body in answers} == {"zone-2"}
    assert {body["instance"] for _, body in answers} == {"backend-z2-1", "backend-z2-2"}
    callers: dict[str, int] = {}
    for sidecar in backend_sidecars:
        for caller, n in sidecar.inbound()["authorized"].items():
            callers[caller] = callers.get(caller, 0) + n
    assert callers == {"spiffe://default/web": 100}
    routed = ingress.stats()["services"]
    assert [(r["service"], r["connectionsTotal"]) for r in routed] == [("backend", 100)]
    assert web_sidecar.outbound("backend")["connectionsTotal"] == 100
    # `curl http://backend.mesh` works too when the sidecar may bind port 80 (root here).
    assert out.also_port_80
    if os.geteuid() == 0:
        assert http_get(out.address, 80)[1]["zone"] == "zone-2"


def test_bulk_bytes_pass_unchanged(procs: Procs, tmp_path: Path) -> None:
    """8 MiB of random bytes each way through two sidecars and the ingress: any protocol
    (HTTP/2 included) passes as bytes, with flow control under a fast writer."""
    s = Scenario()
    web = s.add_instance("web-1", "zone-1", "web")
    backend = s.add_instance("backend-1", "zone-2", "backend")
    spot = s.add_ingress("zone-2")
    run = Launcher(procs, tmp_path)
    run.echo(backend, mode="tcp")
    run.sidecar(backend.name, s.callee_config(backend))
    run.ingress(spot, s.ingress_config("zone-2"))
    config = s.sidecar_config(web)
    run.sidecar("web-1", config)
    out = outbound(config, "backend")
    payload = os.urandom(8 * 1024 * 1024)
    with socket.create_connection((out.address, out.port), timeout=10) as sock:
        assert recv_line(sock) == b"backend-1 zone-2\n"
        received = bytearray()
        view = memoryview(payload)
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 30
        while len(received) < len(payload) and time.monotonic() < deadline:
            if sent < len(payload):
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(view[sent : sent + 65536])
            try:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += chunk
            except BlockingIOError:
                time.sleep(0.001)
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_local_zone_first_then_failover(procs: Procs, tmp_path: Path) -> None:
    s = Scenario()
    web = s.add_instance("web-1", "zone-1", "web")
    local = s.add_instance("backend-z1", "zone-1", "backend")
    remote = s.add_instance("backend-z2", "zone-2", "backend")
    spot = s.add_ingress("zone-2")
    run = Launcher(procs, tmp_path)
    run.echo(local)
    run.echo(remote)
    local_sidecar = run.sidecar(local.name, s.callee_config(local))
    run.sidecar(remote.name, s.callee_config(remote))
    run.ingress(spot, s.ingress_config("zone-2"))
    config = s.sidecar_config(web)
    run.sidecar("web-1", config)
    out = outbound(config, "backend")
    assert {e.zone for e in out.endpoints} == {"zone-1", "zone-2"}

    before = [http_get(out.address, out.port)[1]["zone"] for _ in range(20)]
    assert set(before) == {"zone-1"}

    local_sidecar.proc.stop()  # zone-1's instance goes away (its sidecar with it)
    after = [http_get(out.address, out.port) for _ in range(30)]
    assert all(status == 200 for status, _ in after)
    assert {body["zone"] for _, body in after} == {"zone-2"}


def test_locality_awareness_disabled_spreads_across_zones(procs: Procs, tmp_path: Path) -> None:
    s = Scenario()
    s.add_policy(
        _policy(
            "MeshLoadBalancingStrategy",
            "no-locality",
            {"localityAwareness": {"disabled": True}},
        )
    )
    web = s.add_instance("web-1", "zone-1", "web")
    local = s.add_instance("backend-z1", "zone-1", "backend")
    remote = s.add_instance("backend-z2", "zone-2", "backend")
    spot = s.add_ingress("zone-2")
    run = Launcher(procs, tmp_path)
    run.echo(local)
    run.echo(remote)
    run.sidecar(local.name, s.callee_config(local))
    run.sidecar(remote.name, s.callee_config(remote))
    run.ingress(spot, s.ingress_config("zone-2"))
    config = s.sidecar_config(web)
    assert not outbound(config, "backend").policies.locality_aware
    run.sidecar("web-1", config)
    out = outbound(config, "backend")
    zones = [http_get(out.address, out.port)[1]["zone"] for _ in range(20)]
    # Round robin over both zones, each weight 1: strictly alternating.
    assert zones.count("zone-1") == 10 and zones.count("zone-2") == 10


def tls_refused(ctx: ssl.SSLContext, host: str, port: int) -> bool:
    """True when the server refuses the caller: a failed handshake, or a connection closed
    before any answer to a request."""
    with socket.create_connection((host, port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
                return closed_without_data(tls)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True


def _policy(kind: str, name: str, default: dict[str, object]) -> Resource:
    return policy(kind, name, MESH_REF, to=[to(MESH_REF, default)])


def test_traffic_permission_deny_and_foreign_callers(procs: Procs, tmp_path: Path) -> None:
    s = Scenario()
    s.set_policies(
        "MeshTrafficPermission",
        [mtp("web-to-backend", svc("backend"), from_=[frm(svc("web"), "Allow")])],
    )
    web = s.add_instance("web-1", "zone-1", "web")
    backend = s.add_instance("backend-1", "zone-1", "backend")
    run = Launcher(procs, tmp_path)
    run.echo(backend)
    backend_sidecar = run.sidecar(backend.name, s.callee_config(backend))
    config = s.sidecar_config(web)
    run.sidecar("web-1", config)
    out = outbound(config, "backend")
    assert http_get(out.address, out.port)[0] == 200

    # A caller with a certificate from another CA, and one without a certificate: the
    # backend sidecar's handshake fails (TLS 1.3 clients see it on their first read).
    other_ca = create_mesh_ca("default")
    foreign = client_context(issue_leaf(other_ca, "web"), s.ca.cert)
    assert tls_refused(foreign, backend.address, backend.port)
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cadata=s.ca.cert_pem.decode())
    assert tls_refused(bare, backend.address, backend.port)
    # A mesh identity the permissions do not allow: refused after the handshake.
    stranger = client_context(s.leaf("stranger"), s.ca.cert)
    assert tls_refused(stranger, backend.address, backend.port)
    wait_until(lambda: backend_sidecar.inbound()["handshakeFailures"] >= 2)
    seen = backend_sidecar.inbound()
    assert seen["denied"] == {"spiffe://default/stranger": 1}
    assert seen["authorized"] == {"spiffe://default/web": 1}
    # A TCP health check (connect, close) is not a refused caller.
    socket.create_connection((backend.address, backend.port), timeout=5).close()
    wait_until(lambda: backend_sidecar.inbound()["closedEarly"] == 1)
    assert backend_sidecar.inbound()["handshakeFailures"] == 2

    # Remove the allow: web's new connections are refused by the backend sidecar.
    s.set_policies("MeshTrafficPermission", [])
    backend_sidecar.reload(s.callee_config(backend))
    with socket.create_connection((out.address, out.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
        assert closed_without_data(sock)
    assert backend_sidecar.inbound()["denied"]["spiffe://default/web"] == 1


def test_certificate_rotation_under_a_long_lived_connection(procs: Procs, tmp_path: Path) -> None:
    """Short-lived certificates are replaced (SIGHUP with a new leaf) while a connection
    through web's sidecar, the ingress and backend's sidecar stays open; it keeps working
    after the old certificates expired, and new connections use the new ones."""
    s = Scenario()
    web = s.add_instance("web-1", "zone-1", "web")
    backend = s.add_instance("backend-1", "zone-2", "backend")
    spot = s.add_ingress("zone-2")
    run = Launcher(procs, tmp_path)
    run.echo(backend, mode="tcp")
    run.ingress(spot, s.ingress_config("zone-2"))
    short = dt.timedelta(seconds=8)
    old_backend, old_web = s.leaf("backend", short), s.leaf("web", short)
    backend_sidecar = run.sidecar(backend.name, s.callee_config(backend, old_backend))
    config = s.sidecar_config(web, old_web)
    web_sidecar = run.sidecar("web-1", config)
    out = outbound(config, "backend")
    expiry = min(c.cert.not_valid_after_utc for c in (old_backend, old_web)).timestamp()

    with socket.create_connection((out.address, out.port), timeout=5) as long_lived:
        assert recv_line(long_lived) == b"backend-1 zone-2\n"
        long_lived.sendall(b"before\n")
        assert recv_line(long_lived) == b"before\n"

        new_backend, new_web = s.leaf("backend"), s.leaf("web")
        backend_sidecar.reload(s.callee_config(backend, new_backend))
        web_sidecar.reload(s.sidecar_config(web, new_web))
        assert web_sidecar.stats()["certificate"]["serial"] == format(
            new_web.cert.serial_number, "x"
        )

        long_lived.sendall(b"during\n")
        assert recv_line(long_lived) == b"during\n"
        wait_until(lambda: time.time() > expiry + 0.5, timeout=15, what="old certs expired")
        long_lived.sendall(b"after expiry\n")
        assert recv_line(long_lived) == b"after expiry\n"

        # New handshakes present the new certificates (the old ones would now fail).
        with socket.create_connection((out.address, out.port), timeout=5) as fresh:
            assert recv_line(fresh) == b"backend-1 zone-2\n"
        presented = _served_certificate(s, backend.address, backend.port)
        assert presented == new_backend.cert.serial_number
    assert backend_sidecar.inbound()["handshakeFailures"] == 0


def _served_certificate(s: Scenario, host: str, port: int) -> int:
    ctx = client_context(s.leaf("web"), s.ca.cert)
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_reachable_services_share_one_host_and_a_taken_vip_is_named(
    procs: Procs, tmp_path: Path
) -> None:
    s = Scenario()
    backend = s.add_instance("backend-1", "zone-1", "backend")
    web = s.add_instance("web-1", "zone-1", "web")
    ops = s.add_instance("ops-1", "zone-1", "ops")
    ops_2 = s.add_instance("ops-2", "zone-1", "ops")
    run = Launcher(procs, tmp_path)
    run.echo(backend)
    run.echo(web)
    run.sidecar(backend.name, s.callee_config(backend))
    run.sidecar(web.name, s.callee_config(web))
    ops_config = s.sidecar_config(ops)
    assert {o.service for o in ops_config.outbounds} == {"backend", "web", "ops"}
    # Two callers with the same outbounds on one host: each binds only what it may reach.
    first = run.sidecar("ops-1", ops_config, "--reachable-services", "backend")
    second = run.sidecar("ops-2", s.sidecar_config(ops_2), "--reachable-services", "web,ops")
    assert [o["service"] for o in first.stats()["outbounds"]] == ["backend"]
    assert sorted(o["service"] for o in second.stats()["outbounds"]) == ["ops", "web"]
    to_backend, to_web = outbound(ops_config, "backend"), outbound(ops_config, "web")
    assert http_get(to_backend.address, to_backend.port)[1]["instance"] == "backend-1"
    assert http_get(to_web.address, to_web.port)[1]["instance"] == "web-1"

    # A third sidecar that wants every VIP cannot start, and says which one is taken.
    ops_3 = s.add_instance("ops-3", "zone-1", "ops")
    third = run.sidecar("ops-3", s.sidecar_config(ops_3), wait=False)
    assert third.proc.popen.wait(10) == 2
    assert f"{to_backend.address}:{to_backend.port}: already in use" in third.proc.log()


def test_a_bad_reload_keeps_the_running_config(procs: Procs, tmp_path: Path) -> None:
    s = Scenario()
    backend = s.add_instance("backend-1", "zone-1", "backend")
    web = s.add_instance("web-1", "zone-1", "web")
    run = Launcher(procs, tmp_path)
    run.echo(backend)
    run.sidecar(backend.name, s.callee_config(backend))
    config = s.sidecar_config(web)
    sidecar = run.sidecar("web-1", config)
    out = outbound(config, "backend")
    version = sidecar.stats()["version"]

    sidecar.config_path.write_text('{"mesh": "default", "inbounds": 7}')
    sidecar.proc.signal(signal.SIGHUP)
    wait_until(lambda: sidecar.stats()["source"]["failedReloads"] == 1)
    assert "inbounds: Expected `array`, got `int`" in sidecar.stats()["source"]["lastError"]

    # A config whose new listener is taken: nothing of it is applied.
    with socket.create_server((s.addresses.next(), 0)) as squatter:
        host, port = squatter.getsockname()[:2]
        taken = msgspec.structs.replace(
            config,
            outbounds=(*config.outbounds, msgspec.structs.replace(out, address=host, port=port)),
        ).stamped()
        sidecar.config_path.write_bytes(taken.to_bytes())
        sidecar.proc.signal(signal.SIGHUP)
        wait_until(lambda: sidecar.stats()["source"]["failedReloads"] == 2)
        assert f"{host}:{port}: already in use" in sidecar.stats()["source"]["lastError"]
    assert sidecar.stats()["version"] == version
    assert http_get(out.address, out.port)[0] == 200
    assert sidecar.proc.alive()


def test_command_line_errors_are_clear(procs: Procs, tmp_path: Path) -> None:
    mesh_dp = procs.script("mesh-dp")

    def fails(*args: str) -> str:
        result = subprocess.run([mesh_dp, "run", *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result
        return result.stderr

    assert "give --cp grpc://HOST:PORT" in fails()
    cp = f"grpc://127.0.0.1:{free_port()}"  # never dialled: each run fails before connecting
    dp = tmp_path / "dp.yaml"
    dp.write_text("type: Mesh\nname: web\n")
    assert "type: must be 'Dataplane'" in fails("--cp", cp, "--dataplane-file", str(dp))
    # The envelope's rules are the API's, checked without the resource schema (decision 187).
    dp.write_text("name: Web_1\nlabels: {kuma.io/effect: shadow}\n")
    bad = fails("--cp", cp, "--dataplane-file", str(dp))
    assert "not a valid Dataplane: name: must be a lowercase RFC 1123 subdomain" in bad
    assert "labels['kuma.io/effect']: not supported: meshfed has no shadow mode" in bad
    missing = tmp_path / "missing.json"
    assert f"cannot read {missing}" in fails("--config-file", str(missing))
    dp.write_text(
        "name: web\nnetworking:\n  address: 127.0.0.1\n  inbound: [{port: 1, tags: "
        "{kuma.io/service: web}}]\n"
    )
    assert "give --dataplane-token-file FILE" in fails("--cp", cp, "--dataplane-file", str(dp))
    assert "--dataplane-token-file is for --cp" in fails(
        "--config-file", str(missing), "--dataplane-token-file", str(missing)
    )
    help_text = subprocess.run(
        [mesh_dp, "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    for option in (
        "--cp",
        "--dataplane-file",
        "--reachable-services",
        "--config-file",
        "--dataplane-token-file",
    ):
        assert option in help_text
