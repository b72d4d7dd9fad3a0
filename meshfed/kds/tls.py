"""KDS over TLS: the global's server credentials (its own CA or the operator's certificate,
both rotated without a restart) and a zone's channel credentials (pinned CA, system roots, or
skip-verify).

Server side: gRPC asks `ServerTls` for the certificate at every new handshake
(`grpc.dynamic_ssl_server_credentials`), so a certificate issued from the KDS CA is replaced
once 80% of its life has passed, and an operator's `--kds-tls-cert` file is re-read when it
changes (e.g. cert-manager renewed it). Open streams keep the certificate they started with.
gRPC speaks TLS 1.2 and 1.3 only.

The KDS CA is two GlobalSecrets (`kds-ca-cert`, `kds-ca-key`) written in one batch that
expects both absent, so replicas sharing a store make one CA and a restart never replaces it.
They are never synced to zones (meshfed.resources.types.secret allows only public token keys
and revocation lists).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshfed.pki.server_cert import (
    TlsPair,
    check_chain,
    create_tls_ca,
    issue_server_cert,
    load_pair,
)
from meshfed.pki.spiffe import PkiError
from meshfed.resources.model import Meta, Resource
from meshfed.store.base import AlreadyExistsError, ConflictError, ResourceStore

log = logging.getLogger("meshfed.kds")

GLOBAL_SECRET = "GlobalSecret"
KDS_CA_CERT = "kds-ca-cert"
KDS_CA_KEY = "kds-ca-key"
ROTATE_AT = 0.8  # share of a server certificate's life after which a new one is issued
CA_FILE_NAME = "kds-ca.crt"
SKIP_VERIFY_TIMEOUT = 5.0


class TlsSetupError(Exception):
    """KDS TLS cannot be set up as configured (the message says what to fix)."""


# -- the KDS CA in the store ------------------------------------------------------------------


def _secret(name: str, data: bytes) -> Resource:
    return Resource(GLOBAL_SECRET, Meta(name=name), {"data": base64.b64encode(data).decode()})


def _secret_data(res: Resource) -> bytes:
    try:
        return base64.b64decode(str(res.spec.get("data", "")), validate=True)
    except ValueError:
        return b""


async def ensure_kds_ca(store: ResourceStore) -> tuple[TlsPair, bool]:
    """The KDS CA from the store, created on the first start; (pair, created)."""
    for _ in range(5):
        # One read of both (one etcd transaction): two gets could see a replica's pair, which
        # is written in one batch, half made.
        keys = [(GLOBAL_SECRET, "", name) for name in (KDS_CA_CERT, KDS_CA_KEY)]
        found = {key[2]: res for key, res in (await store.get_many(keys)).items()}
        if len(found) == 2:
            try:
                pair = load_pair(_secret_data(found[KDS_CA_CERT]), _secret_data(found[KDS_CA_KEY]))
            except PkiError as exc:
                raise TlsSetupError(
                    f"GlobalSecrets {KDS_CA_CERT}/{KDS_CA_KEY} do not hold a usable CA ({exc}); "
                    "delete both to make a new KDS CA (zones must then be given the new one)"
                ) from None
            return pair, False
        if found:
            raise TlsSetupError(
                f"only one of GlobalSecrets {KDS_CA_CERT}, {KDS_CA_KEY} exists; delete it to "
                "make a new KDS CA (zones must then be given the new one)"
            )
        pair = create_tls_ca("meshfed KDS CA")
        puts = [_secret(KDS_CA_CERT, pair.cert_pem), _secret(KDS_CA_KEY, pair.key_pem)]
        try:
            await store.write_batch(puts, [], expected={p.key: None for p in puts})
        except (AlreadyExistsError, ConflictError):
            continue  # another replica was first: read its CA
        return pair, True
    raise TlsSetupError("could not create the KDS CA (store contention)")


# -- server credentials -----------------------------------------------------------------------


class CertSource(Protocol):
    def poll(self) -> tuple[bytes, bytes] | None:
        """(certificate chain PEM, key PEM) when it changed since the last call, else None.
        The first call always answers."""


class IssuedCert:
    """Server certificates issued from the KDS CA for `names`, renewed before they expire."""

    def __init__(
        self,
        ca: TlsPair,
        names: Sequence[str],
        *,
        validity: dt.timedelta = dt.timedelta(days=30),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ca = ca
        self.names = list(names)
        self._validity = validity
        self._clock = clock
        self._lock = threading.Lock()
        self._renew_at = 0.0
        self.issued = 0  # how many certificates were issued (for tests and logs)
        issue_server_cert(ca, self.names, validity=validity)  # names checked at start

    def poll(self) -> tuple[bytes, bytes] | None:
        with self._lock:
            now = self._clock()
            if self.issued and now < self._renew_at:
                return None
            when = dt.datetime.fromtimestamp(now, dt.UTC)
            pair = issue_server_cert(self._ca, self.names, validity=self._validity, now=when)
            # Counted from issue, not from notBefore (backdated for slow clocks).
            life = (pair.cert.not_valid_after_utc - when).total_seconds()
            self._renew_at = now + max(1.0, life * ROTATE_AT)
            self.issued += 1
            if self.issued > 1:
                log.info(
                    "KDS server certificate renewed (valid until %s)", pair.cert.not_valid_after_utc
                )
            return pair.cert_pem + self._ca.cert_pem, pair.key_pem


class FileCert:
    """The operator's certificate and key files, re-read when either changes."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int, float, int] | None = None
        self._read()  # refuse to start with unusable files

    def _read(self) -> tuple[bytes, bytes]:
        try:
            chain = self.cert_path.read_bytes()
            key = self.key_path.read_bytes()
        except OSError as exc:
            raise TlsSetupError(f"cannot read the KDS TLS certificate or key: {exc}") from None
        try:
            check_chain(chain, key)
        except PkiError as exc:
            raise TlsSetupError(f"{self.cert_path} / {self.key_path}: {exc}") from None
        return chain, key

    def _stat(self) -> tuple[float, int, float, int]:
        c, k = self.cert_path.stat(), self.key_path.stat()
        return (c.st_mtime, c.st_size, k.st_mtime, k.st_size)

    def poll(self) -> tuple[bytes, bytes] | None:
        with self._lock:
            try:
                stamp = self._stat()
            except OSError as exc:
                log.warning("KDS TLS files unreadable, keeping the loaded ones: %s", exc)
                return None
            if stamp == self._stamp:
                return None
            try:
                pair = self._read()
            except TlsSetupError as exc:
                log.warning("%s; keeping the loaded certificate", exc)
                return None
            if self._stamp is not None:
                log.info("KDS TLS certificate reloaded from %s", self.cert_path)
            self._stamp = stamp
            return pair


class ServerTls:
    """Server credentials whose certificate comes from a CertSource at every handshake."""

    def __init__(self, source: CertSource) -> None:
        self.source = source

    def credentials(self) -> grpc.ServerCredentials:
        first = self.source.poll()
        if first is None:  # pragma: no cover - a source answers its first poll
            raise TlsSetupError("no KDS server certificate")
        # The stubs say the fetcher must answer a configuration; gRPC documents None as
        # "keep the current one", which is what an unchanged source means.
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch)
        return grpc.dynamic_ssl_server_credentials(
            _config(first), fetch, require_client_authentication=False
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called on a gRPC thread before each handshake: it must never raise.
        try:
            fresh = self.source.poll()
        except Exception:
            log.exception("KDS server certificate renewal failed; keeping the current one")
            return None
        return _config(fresh) if fresh is not None else None


def _config(pair: tuple[bytes, bytes]) -> grpc.ServerCertificateConfiguration:
    chain, key = pair
    return grpc.ssl_server_certificate_configuration([(key, chain)])


def write_ca_file(path: Path, cert_pem: bytes) -> None:
    """Writes the CA certificate (public) atomically, readable by all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, cert_pem)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- client credentials -----------------------------------------------------------------------


def read_ca_file(path: Path) -> bytes:
    """The PEM certificates of a CA file; TlsSetupError when it holds none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsSetupError(f"cannot read the KDS CA file: {exc}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsSetupError(f"{path} holds no PEM certificate: {exc}") from None
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def zone_tls(ca_file: Path | None, skip_verify: bool, insecure: bool) -> ClientTls | None:
    """A zone's choice of KDS transport from its flags (None: plaintext); contradictory flags
    are refused rather than one of them silently winning."""
    if insecure and (ca_file is not None or skip_verify):
        raise TlsSetupError(
            "--kds-insecure (plaintext) contradicts --kds-ca-file/--kds-tls-skip-verify"
        )
    if skip_verify and ca_file is not None:
        raise TlsSetupError("--kds-tls-skip-verify contradicts --kds-ca-file (which pins a CA)")
    if insecure:
        return None
    return ClientTls(read_ca_file(ca_file) if ca_file is not None else None, skip_verify)


@dataclass(frozen=True)
class ClientTls:
    """How a zone checks the global: `ca_pem` pins those CAs (None: the system's roots);
    `skip_verify` trusts whatever certificate the global presents (tests and emergencies)."""

    ca_pem: bytes | None = None
    skip_verify: bool = False

    async def credentials(self, target: str) -> tuple[grpc.ChannelCredentials, list[Any]]:
        """Credentials and extra channel options for one session to `target` (HOST:PORT)."""
        if not self.skip_verify:
            return grpc.ssl_channel_credentials(root_certificates=self.ca_pem), []
        # gRPC Python cannot turn verification off: trust the chain the server presents
        # right now (its top certificate as the root), under the name it carries.
        host, port = split_target(target)
        chain = await asyncio.to_thread(_presented_chain, host, port)
        leaf = x509.load_der_x509_certificate(chain[0])
        root = x509.load_der_x509_certificate(chain[-1])
        options: list[Any] = [("grpc.ssl_target_name_override", _name_in(leaf) or host)]
        pem = root.public_bytes(serialization.Encoding.PEM)
        return grpc.ssl_channel_credentials(root_certificates=pem), options


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def _presented_chain(host: str, port: int) -> list[bytes]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=SKIP_VERIFY_TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as conn,
    ):
        sslobj = getattr(conn, "_sslobj", None)
        getter = getattr(sslobj, "get_unverified_chain", None)  # public in 3.13
        chain = getter() if getter is not None else None
        if chain:
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
        der = conn.getpeercert(binary_form=True)
        if not der:
            raise ssl.SSLError("the server presented no certificate")
        return [der]


def _name_in(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for dns in san.get_values_for_type(x509.DNSName):
        if not dns.startswith("*."):
            return dns
    ips = san.get_values_for_type(x509.IPAddress)
    return str(ips[0]) if ips else None
