"""The CA expiry gauge: read from the store at each scrape, a deleted CA's series gone."""

from __future__ import annotations

import base64
import datetime as dt

from prometheus_client import CollectorRegistry

from meshfed.api.ca_expiry import CaExpiry
from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.server_cert import create_tls_ca
from meshfed.resources.model import Meta, Resource
from meshfed.store.memory import MemoryStore

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NAME = "meshfed_ca_certificate_expiry_timestamp_seconds"


def secret(type_: str, mesh: str, name: str, pem: bytes) -> Resource:
    return Resource(type_, Meta(name=name, mesh=mesh), {"data": base64.b64encode(pem).decode()})


async def test_mesh_kds_and_pinned_cas_then_a_deleted_one_goes() -> None:
    store = MemoryStore()
    mesh_ca = create_mesh_ca("default", validity=dt.timedelta(days=10), now=NOW)
    kds_ca = create_tls_ca("kds")
    await store.create(
        secret("Secret", "default", "default.ca-builtin-cert-ca-1", mesh_ca.cert_pem)
    )
    await store.create(secret("Secret", "default", "other", mesh_ca.cert_pem))  # not a CA
    await store.create(secret("GlobalSecret", "", "kds-ca-cert", kds_ca.cert_pem))
    registry = CollectorRegistry()
    expiry = CaExpiry(registry)
    pinned = [("kds", "kds-ca-file", kds_ca.cert_pem), ("kds", "junk", b"not a certificate")]
    await expiry.refresh(store, pinned)

    def value(**labels: str) -> float | None:
        return registry.get_sample_value(NAME, labels)

    mesh_labels = {"ca": "mesh", "mesh": "default", "name": "default.ca-builtin-cert-ca-1"}
    assert value(**mesh_labels) == (NOW + dt.timedelta(days=10)).timestamp()
    kds_after = kds_ca.cert.not_valid_after_utc.timestamp()
    assert value(ca="kds", mesh="", name="kds-ca-cert") == kds_after
    assert value(ca="kds", mesh="", name="kds-ca-file") == kds_after
    assert value(ca="mesh", mesh="default", name="other") is None
    assert value(ca="kds", mesh="", name="junk") is None

    await store.delete("Secret", "default", "default.ca-builtin-cert-ca-1")
    await expiry.refresh(store)
    assert value(**mesh_labels) is None
    assert value(ca="kds", mesh="", name="kds-ca-cert") == kds_after
