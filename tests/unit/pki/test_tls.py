"""Real TLS handshakes over loopback sockets between contexts built from mesh certificates."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import serialization

from meshfed.pki.ca import KeyAlgorithm, MeshCA, create_mesh_ca
from meshfed.pki.leaf import Leaf, issue_leaf
from meshfed.pki.spiffe import PkiError
from meshfed.pki.tls import (
    PeerIdentityError,
    check_peer_id,
    client_context,
    load_leaf,
    peer_spiffe_id,
    server_context,
)

TIMEOUT = 10.0
T = TypeVar("T")


@dataclass
class Outcome:
    peer: str | None = None  # SPIFFE ID this side saw
    reply: bytes | None = None
    error: BaseException | None = None


def exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Outcome, Outcome]:
    """One connection: the client sends "ping", the server answers "pong" after the handshake."""
    server, client = Outcome(), Outcome()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(TIMEOUT)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    server.peer = peer_spiffe_id(tls)
                    server.reply = tls.recv(4)
                    tls.sendall(b"pong")
            except (OSError, PkiError) as exc:  # ssl.SSLError is an OSError
                server.error = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw,
                client_ctx.wrap_socket(raw) as tls,
            ):
                client.peer = peer_spiffe_id(tls)
                tls.sendall(b"ping")
                client.reply = tls.recv(4)
        except (OSError, PkiError) as exc:
            client.error = exc
        finally:
            thread.join(TIMEOUT)
    assert not thread.is_alive()
    return server, client


def refused(server: Outcome, client: Outcome) -> bool:
    """Neither side got application data through: the handshake failed or was torn down."""
    return (
        isinstance(server.error, ssl.SSLError)
        and server.peer is None
        and server.reply is None
        and client.reply in (None, b"")
    )


@pytest.fixture(scope="module")
def ca() -> MeshCA:
    return create_mesh_ca("default")


@pytest.fixture(scope="module")
def backend(ca: MeshCA) -> Leaf:
    return issue_leaf(ca, "backend")


@pytest.fixture(scope="module")
def web(ca: MeshCA) -> Leaf:
    return issue_leaf(ca, "web")


def pinned(ctx: ssl.SSLContext, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_mutual_tls_each_side_sees_the_others_spiffe_id(
    ca: MeshCA, backend: Leaf, web: Leaf, version: ssl.TLSVersion
) -> None:
    server, client = exchange(
        server_context(backend, ca.cert), pinned(client_context(web, ca.cert), version)
    )
    assert server.error is None and client.error is None
    assert server.peer == "spiffe://default/web"
    assert client.peer == "spiffe://default/backend"
    assert (server.reply, client.reply) == (b"ping", b"pong")


def test_rsa_ca_works_too() -> None:
    ca = create_mesh_ca("default", algorithm=KeyAlgorithm.RSA_2048)
    server, client = exchange(
        server_context(issue_leaf(ca, "backend"), ca.cert),
        client_context(issue_leaf(ca, "web"), [ca.cert]),
    )
    assert (server.peer, client.peer) == ("spiffe://default/web", "spiffe://default/backend")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_from_another_ca_is_refused(
    ca: MeshCA, backend: Leaf, version: ssl.TLSVersion
) -> None:
    other = create_mesh_ca("default")
    # The stranger trusts our CA, so only the server's check can stop it.
    stranger = client_context(issue_leaf(other, "web"), ca.cert)
    server, client = exchange(server_context(backend, ca.cert), pinned(stranger, version))
    assert refused(server, client)
    assert "certificate" in str(server.error).lower()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_without_certificate_is_refused(
    ca: MeshCA, backend: Leaf, version: ssl.TLSVersion
) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=ca.cert_pem.decode())
    server, client = exchange(server_context(backend, ca.cert), pinned(anonymous, version))
    assert refused(server, client)
    assert "did not return a certificate" in str(server.error)


def test_expired_client_leaf_is_refused(ca: MeshCA, backend: Leaf) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired = issue_leaf(ca, "web", validity=dt.timedelta(hours=1), now=past)
    server, client = exchange(server_context(backend, ca.cert), client_context(expired, ca.cert))
    assert refused(server, client)
    assert "expired" in str(server.error)


def test_client_refuses_a_server_from_another_ca_or_expired(ca: MeshCA, web: Leaf) -> None:
    other = create_mesh_ca("default")
    server, client = exchange(
        server_context(issue_leaf(other, "backend"), [other.cert, ca.cert]),
        client_context(web, ca.cert),
    )
    assert isinstance(client.error, ssl.SSLCertVerificationError)
    assert server.reply is None

    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired = issue_leaf(ca, "backend", validity=dt.timedelta(hours=1), now=past)
    server, client = exchange(server_context(expired, ca.cert), client_context(web, ca.cert))
    assert isinstance(client.error, ssl.SSLCertVerificationError)
    assert "expired" in str(client.error)


def with_client(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, use: Callable[[ssl.SSLSocket], T]
) -> T:
    """Runs `use` on the client end of a completed handshake; the server waits for one byte."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw,
                client_ctx.wrap_socket(raw) as tls,
            ):
                result = use(tls)
                tls.sendall(b"x")
        finally:
            thread.join(TIMEOUT)
    return result


def test_check_peer_id_refuses_the_wrong_service(ca: MeshCA, web: Leaf) -> None:
    """A verified server that is not the service the client wanted (e.g. a stale endpoint)."""
    billing = server_context(issue_leaf(ca, "billing"), ca.cert)

    def check(tls: ssl.SSLSocket) -> str:
        assert check_peer_id(tls, "spiffe://default/billing") == "spiffe://default/billing"
        with pytest.raises(PeerIdentityError) as info:
            check_peer_id(tls, "spiffe://default/backend")
        return str(info.value)

    message = with_client(billing, client_context(web, ca.cert), check)
    assert message == "peer is spiffe://default/billing, expected spiffe://default/backend"


def test_rotating_the_leaf_changes_the_cert_of_new_handshakes(ca: MeshCA, web: Leaf) -> None:
    first = issue_leaf(ca, "backend")
    ctx = server_context(first, ca.cert)
    before = with_client(ctx, client_context(web, ca.cert), lambda t: t.getpeercert(True))
    second = issue_leaf(ca, "backend")
    load_leaf(ctx, second)
    after = with_client(ctx, client_context(web, ca.cert), lambda t: t.getpeercert(True))
    assert before == first.cert.public_bytes(serialization.Encoding.DER)
    assert after == second.cert.public_bytes(serialization.Encoding.DER)


def test_contexts_need_a_trust_root(web: Leaf) -> None:
    with pytest.raises(PkiError, match="trusted"):
        client_context(web, [])
