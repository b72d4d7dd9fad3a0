"""A real zone-egress process between mesh callers and external TLS servers (issue 17).

One egress runs from a static EgressConfig for the whole module, in front of a local HTTPS
server with its own CA (and name `ext.test`) and a plain TCP one. The callers do what a
sidecar does: mTLS to the egress with the service's SNI, checking that the egress speaks for
`spiffe://default/<service>`. Each service of the config exercises one case: verified TLS
origination, a wrong CA, a wrong serverName, SAN matchers, plain TCP, a denied caller.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshfed.dpconfig.sni import encode_sni
from meshfed.pki.ca import MeshCA, create_mesh_ca
from meshfed.pki.leaf import Leaf, issue_leaf
from meshfed.pki.tls import check_peer_id, mtls_context
from tests.integration.egress_support import (
    TlsServer,
    external_server_context,
    module_processes,
)
from tests.support import Procs, free_port, port_open, wait_until

pytestmark = pytest.mark.integration

MESH = "default"
TIMEOUT = 10.0


def pem(text: bytes) -> str:
    return text.decode()


def leaf_tls(leaf: Leaf, ca: MeshCA) -> dict[str, Any]:
    return {
        "certPem": pem(leaf.cert_pem),
        "keyPem": pem(leaf.key_pem),
        "caPems": [pem(ca.cert_pem)],
        "expiresAt": "2099-01-01T00:00:00Z",
    }


class World:
    def __init__(self, tmp: Path, procs: Procs) -> None:
        self.mesh_ca = create_mesh_ca(MESH)
        self.ext_ca = create_mesh_ca("ext")
        other_ca = create_mesh_ca("other")
        self.https = TlsServer("https", external_server_context(self.ext_ca, tmp))
        self.plain = TlsServer("plain", None)
        self.unix_path = tmp / "ext.sock"
        self.unix = TlsServer("unix", None, unix=self.unix_path)
        allow_web = {"mesh": MESH, "services": {"web": "Allow"}}

        def service(name: str, port: int, origin: dict[str, Any] | None) -> dict[str, Any]:
            leaf = issue_leaf(self.mesh_ca, name)
            out: dict[str, Any] = {
                "mesh": MESH,
                "name": name,
                "sni": encode_sni(name, MESH),
                "tls": leaf_tls(leaf, self.mesh_ca),
                "permissions": allow_web,
                "endpoints": [{"address": "127.0.0.1", "port": port}],
                "connectTimeout": 2.0,
            }
            if origin is not None:
                out["originTls"] = origin
            return out

        ca = pem(self.ext_ca.cert_pem)
        services = [
            service("ext-https", self.https.port, {"serverName": "ext.test", "caPem": ca}),
            service(
                "ext-wrong-ca",
                self.https.port,
                {"serverName": "ext.test", "caPem": pem(other_ca.cert_pem)},
            ),
            service("ext-wrong-name", self.https.port, {"serverName": "no.test", "caPem": ca}),
            service(
                "ext-san",
                self.https.port,
                {
                    "serverName": "ext.test",
                    "caPem": ca,
                    "subjectAltNames": [{"type": "Prefix", "value": "spiffe://ext/"}],
                },
            ),
            service("ext-skip-all", self.https.port, {"serverName": "no.test", "mode": "SkipAll"}),
            service("ext-plain", self.plain.port, None),
            {
                **service("ext-unix", 0, None),
                "endpoints": [{"address": f"unix://{self.unix_path}"}],
            },
        ]
        config = tmp / "egress.json"
        config.write_text(
            json.dumps({"zone": "zone-1", "egress": "egress-1", "services": services})
        )
        self.port = free_port()
        self.admin = free_port()
        self.proc = procs.start(
            "zone-egress",
            [
                procs.script("zone-egress"),
                "run",
                "--config-file",
                str(config),
                "--port",
                str(self.port),
                "--admin-address",
                f"127.0.0.1:{self.admin}",
            ],
        )
        wait_until(lambda: port_open("127.0.0.1", self.port), timeout=TIMEOUT, what="egress")
        self.callers = {name: issue_leaf(self.mesh_ca, name) for name in ("web", "intruder")}
        self.tmp = tmp

    def call(self, service: str, caller: str = "web") -> bytes:
        """What a sidecar does: mTLS to the egress for `service`, one HTTP request."""
        leaf = self.callers[caller]
        chain = leaf.cert_pem.rstrip(b"\n") + b"\n" + leaf.key_pem
        ctx = mtls_context(False, chain, [self.mesh_ca.cert.public_bytes(_DER)])
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as raw,
            ctx.wrap_socket(raw, server_hostname=encode_sni(service, MESH)) as tls,
        ):
            check_peer_id(tls, f"spiffe://{MESH}/{service}")
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            out = b""
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    return out
                out += chunk

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats", timeout=5) as r:
            data: dict[str, Any] = json.load(r)
        return data

    def service_stats(self, name: str) -> dict[str, Any]:
        return next(s for s in self.stats()["services"] if s["name"] == name)


from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

_DER = Encoding.DER


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with module_processes(tmp_path_factory, "egress") as (tmp, procs):
        w = World(tmp, procs)
        try:
            yield w
        finally:
            for server in (w.https, w.plain, w.unix):
                server.close()


def test_https_through_the_egress_with_verification(world: World) -> None:
    reply = world.call("ext-https")
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"hello from https")
    assert world.service_stats("ext-https")["connectionsTotal"] >= 1


def test_a_wrong_ca_or_server_name_fails_verification(world: World) -> None:
    assert world.call("ext-wrong-ca") == b""
    assert world.call("ext-wrong-name") == b""
    for name in ("ext-wrong-ca", "ext-wrong-name"):
        stats = world.service_stats(name)
        assert stats["noEndpoint"] >= 1 and stats["connectionsTotal"] == 0
    assert "certificate verification failed" in world.proc.log()


def test_san_matchers_and_skip_all(world: World) -> None:
    assert world.call("ext-san").endswith(b"hello from https")
    assert world.call("ext-skip-all").endswith(b"hello from https")


def test_plain_tcp_and_unix_socket_endpoints(world: World) -> None:
    assert world.call("ext-plain").endswith(b"hello from plain")
    assert world.call("ext-unix").endswith(b"hello from unix")


def test_a_caller_without_permission_is_refused_at_the_egress(world: World) -> None:
    before = world.service_stats("ext-https")["connectionsTotal"]
    assert world.call("ext-https", caller="intruder") == b""
    stats = world.service_stats("ext-https")
    assert stats["denied"] >= 1 and stats["connectionsTotal"] == before


def test_an_unknown_sni_or_a_foreign_certificate_fails_the_handshake(world: World) -> None:
    with pytest.raises(ssl.SSLError):
        world.call("not-a-service")
    stranger_ca = create_mesh_ca(MESH)  # same mesh name, another CA
    world.callers["stranger"] = issue_leaf(stranger_ca, "web")
    # TLS 1.3: the client's handshake ends before the egress has checked its certificate;
    # the egress's refusal then shows as an alert or an end without a byte.
    try:
        reply = world.call("ext-https", caller="stranger")
    except (ssl.SSLError, ConnectionError):
        reply = b""
    assert reply == b""
    assert world.stats()["rejected"].get("unknown_sni", 0) >= 1
