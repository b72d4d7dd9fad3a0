"""The attack of issue 11 against real processes: anyone who can reach a zone's dataplane
port says Hello as `web`, receives spiffe://default/web's certificate and key, and calls a
backend over mTLS as web. Now the Hello without a token (or with a token for another
service) gets no certificate and nothing is registered; with a valid token for web the very
same client code gets the certificate and reaches the backend (so the test can fail), and a
mesh-dp sidecar with its token file calls the backend end to end."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_sidecar_config
from tests.integration.test_cross_zone_support import Mesh, Workload, allow, get
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Outcome:
    config: SidecarConfig | None
    status: grpc.StatusCode | None
    details: str


def hello_as_web(dp_port: int, address: str, token: str | None) -> Outcome:
    """What the attacker's own client gets from zone-cp for a Hello as web."""
    web = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-attacker",
        "networking": {
            "address": address,
            "inbound": [{"port": 1, "tags": {"kuma.io/service": "web"}}],
        },
    }
    metadata = None if token is None else (("authorization", f"Bearer {token}"),)
    done = threading.Event()

    def requests() -> Iterator[pb.DpMessage]:
        yield hello_message(ProxyType.SIDECAR, web)
        done.wait(20)  # the stream stays open until the answer is in

    with grpc.insecure_channel(f"127.0.0.1:{dp_port}") as channel:
        call = pb_grpc.DataplaneConfigStub(channel).Stream(
            requests(), metadata=metadata, timeout=20
        )
        try:
            for msg in call:
                if msg.WhichOneof("message") == "config":
                    call.cancel()  # type: ignore[no-untyped-call]
                    return Outcome(parse_sidecar_config(msg), None, "")
        except grpc.RpcError as exc:
            return Outcome(None, exc.code(), exc.details() or "")
        finally:
            done.set()
    return Outcome(None, None, "the stream ended without a config")


def call_as(config: SidecarConfig, backend: Workload) -> int:
    """GET / on the backend's sidecar inbound with the certificate and key from `config`."""
    assert config.tls is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="".join(config.tls.ca_pems))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_text(config.tls.cert_pem)
        key.write_text(config.tls.key_pem)
        ctx.load_cert_chain(cert, key)
    with (
        socket.create_connection((backend.address, backend.port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        conn = http.client.HTTPConnection(backend.address, backend.port, timeout=5)
        conn.sock = tls
        conn.request("GET", "/")
        return conn.getresponse().status


def test_an_anonymous_hello_gets_no_certificate(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path, ("zone-1",), global_args=("--api-localhost-is-admin",))
    mesh.apply(allow("web-to-backend", "backend", "web"))
    backend = mesh.workload("zone-1", "backend-1", "backend")
    zone = mesh.zones["zone-1"]
    address = mesh.addresses.next()

    anonymous = hello_as_web(zone.dp, address, None)
    assert anonymous.config is None
    assert anonymous.status == grpc.StatusCode.UNAUTHENTICATED
    assert "no dataplane token" in anonymous.details

    other = hello_as_web(zone.dp, address, mesh.dataplane_token("backend"))
    assert other.config is None and other.status == grpc.StatusCode.PERMISSION_DENIED
    assert "kuma.io/service='web', which the dataplane token does not allow" in other.details

    # Nothing of the attempts was registered, in the zone or at the global.
    names = [d["name"] for d in zone.http.items("/meshes/default/dataplanes")]
    assert names == ["backend-1"]
    assert [d["name"] for d in zone.http.items("/meshes/default/dataplane-insights")] == [
        "backend-1"
    ]

    # The same client with a valid token for web gets web's certificate and reaches backend.
    valid = hello_as_web(zone.dp, address, mesh.dataplane_token("web", "web-attacker"))
    stolen = valid.config
    assert stolen is not None, valid
    assert stolen.identity == "spiffe://default/web"
    wait_until(lambda: call_as(stolen, backend) == 200, timeout=20, what="mTLS as web")

    # And a real sidecar with its token file calls backend end to end.
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend")
    answer = wait_until(lambda: get(vip, port), timeout=20, what="web -> backend")
    assert answer["instance"] == "backend-1"
    assert "spiffe://default/web" in backend.callers()
    assert web.sidecar.alive()


def test_a_bad_dataplane_is_refused_by_zone_cp_and_the_sidecar_says_why(
    procs: Procs, tmp_path: Path
) -> None:
    """The sidecar leaves the spec to zone-cp (mesh_dp/dataplane.py): a spec problem comes
    back as BAD_REQUEST naming the field, and mesh-dp exits 1 with that reason."""
    mesh = Mesh.start(procs, tmp_path, ("zone-1",), global_args=("--api-localhost-is-admin",))
    zone = mesh.zones["zone-1"]
    dp = tmp_path / "bad.yaml"
    dp.write_text(
        "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: "
        f"{mesh.addresses.next()}\n  inbound: [{{port: 70000, tags: {{kuma.io/service: web}}}}]\n"
    )
    token = tmp_path / "web.token"
    token.write_text(mesh.dataplane_token("web", "web-1"))
    result = subprocess.run(
        [
            procs.script("mesh-dp"),
            "run",
            "--cp",
            zone.cp_url,
            "--dataplane-file",
            str(dp),
            "--dataplane-token-file",
            str(token),
            "--admin-address",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "networking.inbound[0].port" in result.stderr, result.stderr
