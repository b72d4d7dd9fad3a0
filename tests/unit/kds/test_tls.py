"""KDS TLS: the KDS CA in the store, server certificates (names, renewal without a restart,
the operator's files re-read), and what a zone trusts, over real loopback gRPC."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509 import verification

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.kds.naming import sends_to_zone
from meshfed.kds.tls import (
    KDS_CA_CERT,
    KDS_CA_KEY,
    ClientTls,
    FileCert,
    IssuedCert,
    ServerTls,
    TlsSetupError,
    ensure_kds_ca,
    read_ca_file,
    zone_tls,
)
from meshfed.pki.server_cert import (
    create_tls_ca,
    issue_server_cert,
    san_entries,
    server_names,
)
from meshfed.pki.spiffe import PkiError
from meshfed.resources.model import Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.support import free_port

CA = create_tls_ca("test KDS CA")


def test_server_names_cover_loopback_the_host_and_a_specific_bind_address() -> None:
    assert server_names("0.0.0.0", "cp-1.example", ["kds.example", "10.0.0.5"]) == [
        "localhost",
        "127.0.0.1",
        "::1",
        "cp-1.example",
        "kds.example",
        "10.0.0.5",
    ]
    assert "192.168.1.4" in server_names("192.168.1.4", "h", [])
    assert server_names("[::]", "h", []) == ["localhost", "127.0.0.1", "::1", "h"]


@pytest.mark.parametrize("bad", ["not a host", "a..b", "-x.example", "x" * 300, "ü.example"])
def test_a_bad_name_is_refused(bad: str) -> None:
    with pytest.raises(PkiError, match="neither a host name nor an IP address"):
        san_entries([bad])


def test_a_server_certificate_verifies_for_its_names_only() -> None:
    pair = issue_server_cert(CA, server_names("127.0.0.1", "cp-1", []))
    store = verification.Store([CA.cert])
    for name in (x509.DNSName("localhost"), x509.DNSName("cp-1")):
        verifier = verification.PolicyBuilder().store(store).build_server_verifier(name)
        verifier.verify(pair.cert, [])
    ip = x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))
    verification.PolicyBuilder().store(store).build_server_verifier(ip).verify(pair.cert, [])
    other = verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName("evil"))
    with pytest.raises(verification.VerificationError):
        other.verify(pair.cert, [])


def test_issued_certificates_are_renewed_at_80_percent_of_their_life() -> None:
    now = [1_000_000.0]
    source = IssuedCert(CA, ["localhost"], validity=dt.timedelta(hours=10), clock=lambda: now[0])
    first = source.poll()
    assert first is not None and source.poll() is None
    now[0] += 7.9 * 3600
    assert source.poll() is None
    now[0] += 0.2 * 3600
    second = source.poll()
    assert second is not None and second != first and source.issued == 2
    leaf = x509.load_pem_x509_certificates(second[0])
    assert leaf[1] == CA.cert  # the chain carries the CA (skip-verify clients pin it)


async def test_the_kds_ca_is_made_once_even_when_replicas_race() -> None:
    store = MemoryStore()
    results = await asyncio.gather(*(ensure_kds_ca(store) for _ in range(5)))
    assert sum(created for _, created in results) == 1
    assert len({pair.cert_pem for pair, _ in results}) == 1
    again, created = await ensure_kds_ca(store)
    assert not created and again.cert_pem == results[0][0].cert_pem
    await store.delete("GlobalSecret", "", KDS_CA_KEY)
    with pytest.raises(TlsSetupError, match="only one of"):
        await ensure_kds_ca(store)


def test_the_kds_ca_never_goes_to_zones() -> None:
    desc = default_registry().get("GlobalSecret")
    for name in (KDS_CA_CERT, KDS_CA_KEY):
        res = Resource("GlobalSecret", Meta(name=name), {"data": "eA=="})
        assert not sends_to_zone(desc, res, "zone-1")
    public = Resource("GlobalSecret", Meta(name="zone-token-signing-public-key-1"), {"data": ""})
    assert sends_to_zone(desc, public, "zone-1")  # the filter does let some through


def test_zone_transport_flags_that_contradict_each_other_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(CA.cert_pem)
    assert zone_tls(None, False, True) is None
    assert zone_tls(ca, False, False) == ClientTls(CA.cert_pem, False)
    assert zone_tls(None, False, False) == ClientTls(None, False)  # system roots
    for args in ((ca, False, True), (None, True, True), (ca, True, False)):
        with pytest.raises(TlsSetupError, match="contradicts"):
            zone_tls(*args)
    (tmp_path / "junk").write_text("junk")
    with pytest.raises(TlsSetupError, match="no PEM certificate"):
        read_ca_file(tmp_path / "junk")


def test_operator_files_are_checked_and_re_read(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    one = issue_server_cert(CA, ["localhost"])
    cert.write_bytes(one.cert_pem)
    key.write_bytes(issue_server_cert(CA, ["localhost"]).key_pem)  # not its key
    with pytest.raises(TlsSetupError, match="does not match"):
        FileCert(cert, key)
    key.write_bytes(one.key_pem)
    source = FileCert(cert, key)
    assert source.poll() == (one.cert_pem, one.key_pem) and source.poll() is None
    two = issue_server_cert(CA, ["localhost"])
    key.write_bytes(two.key_pem)  # half-written renewal: refused, the old pair stays
    assert source.poll() is None
    cert.write_bytes(two.cert_pem + b"\n")
    assert source.poll() == (two.cert_pem + b"\n", two.key_pem)


# -- over real gRPC ---------------------------------------------------------------------------


class Health(pb_grpc.KDSServicer):
    async def HealthCheck(
        self, request: pb.HealthCheckRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.HealthCheckResponse:
        return pb.HealthCheckResponse(interval_ms=7)


@asynccontextmanager
async def tls_server(tls: ServerTls) -> AsyncIterator[str]:
    server = grpc.aio.server()
    pb_grpc.add_KDSServicer_to_server(Health(), server)  # type: ignore[abstract]
    port = server.add_secure_port(f"127.0.0.1:{free_port()}", tls.credentials())
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def health(target: str, client: ClientTls) -> int:
    creds, options = await client.credentials(target)
    async with grpc.aio.secure_channel(target, creds, options=options) as channel:
        resp = await pb_grpc.KDSStub(channel).HealthCheck(pb.HealthCheckRequest(), timeout=5)
        return resp.interval_ms


def served_serial(target: str) -> int:
    host, _, port = target.rpartition(":")
    ctx = ssl.create_default_context(cadata=CA.cert_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port))) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


async def test_the_server_certificate_rotates_without_a_restart() -> None:
    # A clock 9 days back and 10-day certificates: the first one is due 1 day from its
    # issue... which the clock reaches after 8 days; both are valid for the real clock.
    now = [time.time() - 9 * 86400]
    source = IssuedCert(
        CA, ["localhost", "127.0.0.1"], validity=dt.timedelta(days=10), clock=lambda: now[0]
    )
    async with tls_server(ServerTls(source)) as target:
        assert await health(target, ClientTls(CA.cert_pem)) == 7
        first = await asyncio.to_thread(served_serial, target)
        assert await asyncio.to_thread(served_serial, target) == first
        now[0] += 8.5 * 86400  # past 80%: the next handshake gets a new certificate
        second = await asyncio.to_thread(served_serial, target)
        assert second != first and source.issued == 2
        assert await health(target, ClientTls(CA.cert_pem)) == 7


async def test_a_zone_trusts_only_its_pinned_ca_unless_told_to_skip_verification() -> None:
    async with tls_server(ServerTls(IssuedCert(CA, ["localhost", "127.0.0.1"]))) as target:
        other = create_tls_ca("another CA")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(target, ClientTls(other.cert_pem))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "CERTIFICATE_VERIFY_FAILED" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError):
            await health(target, ClientTls(None))  # the system roots do not know this CA
        assert await health(target, ClientTls(None, skip_verify=True)) == 7


def test_tls_before_1_2_is_refused() -> None:
    async def run() -> None:
        async with tls_server(ServerTls(IssuedCert(CA, ["localhost"]))) as target:
            host, _, port = target.rpartition(":")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1

            def handshake() -> None:
                with socket.create_connection((host, int(port))) as raw:
                    ctx.wrap_socket(raw).close()

            with pytest.raises(ssl.SSLError):
                await asyncio.to_thread(handshake)

    with pytest.warns(DeprecationWarning):
        asyncio.run(run())
