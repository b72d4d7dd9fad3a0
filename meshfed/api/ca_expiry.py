"""When the control plane's CAs expire, on `/metrics`: each mesh's builtin CA (its Secret
`<mesh>.ca-builtin-cert-<backend>`), the KDS CA the global keeps (GlobalSecret
`kds-ca-cert`), and the CA file a zone pins for KDS.

Read from the store at each scrape, so a rotated or deleted CA shows at once; each
certificate is parsed once (keyed by its bytes).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from cryptography import x509
from prometheus_client import CollectorRegistry, Gauge

from meshfed.pki.ca_secrets import CERT_MARK
from meshfed.store.base import ResourceStore

# GlobalSecret names here, not imported from meshfed.kds (which the API does not depend on).
KDS_CA_SECRET = ("GlobalSecret", "", "kds-ca-cert")


class CaExpiry:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "meshfed_ca_certificate_expiry_timestamp_seconds",
            "notAfter of a CA certificate, seconds since the epoch (earliest in a bundle)",
            ["ca", "mesh", "name"],
            registry=registry,
        )
        self._parsed: dict[bytes, float | None] = {}

    def _not_after(self, pem: bytes) -> float | None:
        if pem not in self._parsed:
            try:
                certs = x509.load_pem_x509_certificates(pem)
                self._parsed[pem] = min(c.not_valid_after_utc.timestamp() for c in certs)
            except ValueError:
                self._parsed[pem] = None  # not a certificate: nothing to report
            if len(self._parsed) > 1024:
                self._parsed.clear()
        return self._parsed[pem]

    async def refresh(
        self, store: ResourceStore, pinned: Iterable[tuple[str, str, bytes]] = ()
    ) -> None:
        """Set the gauge from the store and from `pinned` (ca, name, PEM) certificates."""
        found: list[tuple[str, str, str, bytes]] = []
        page = await store.list("Secret", None, name_contains=CERT_MARK)
        found += [("mesh", r.meta.mesh or "", r.meta.name, _data(r.spec)) for r in page.items]
        for key, res in (await store.get_many([KDS_CA_SECRET])).items():
            found.append(("kds", "", key[2], _data(res.spec)))
        found += [(ca, "", name, pem) for ca, name, pem in pinned]
        self.gauge.clear()  # a deleted mesh's CA leaves no series behind
        for ca, mesh, name, pem in found:
            when = self._not_after(pem)
            if when is not None:
                self.gauge.labels(ca, mesh, name).set(when)


def _data(spec: object) -> bytes:
    data = spec.get("data") if isinstance(spec, dict) else None
    try:
        return base64.b64decode(data, validate=True) if isinstance(data, str) else b""
    except (binascii.Error, ValueError):
        return b""
