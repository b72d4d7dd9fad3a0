"""Dataplane certificates from the mesh CA the global sent: found in the Secrets, issued per
dataplane with the mesh's identity, reused until due, rotated at 80% of the validity counted
from issue (a 10 s certificate is not due at once despite the backdated notBefore)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from global_cp.mesh_ca import ca_secrets, plan_for
from meshfed.pki.ca import MeshCA, create_mesh_ca
from meshfed.pki.leaf import verify_peer
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from zone_cp.certs import CertError, CertIssuer, leaf_validity, mesh_ca, rotation_time

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def mesh(name: str = "default", **backend: Any) -> Resource:
    doc = {
        "type": "Mesh",
        "name": name,
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin", **backend}],
        },
    }
    return resource_from_dict(doc, default_registry())


def secrets_of(m: Resource, ca: MeshCA) -> dict[str, Resource]:
    plan = plan_for(m)
    assert plan is not None
    return {s.name: s for s in ca_secrets(plan, ca)}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def ca() -> MeshCA:
    return create_mesh_ca("default", now=T0 - dt.timedelta(days=1))


def test_the_ca_comes_from_the_secrets(ca: MeshCA) -> None:
    m = mesh()
    assert (
        mesh_ca(resource_from_dict({"type": "Mesh", "name": "x"}, default_registry()), {}) is None
    )
    with pytest.raises(CertError, match="has not reached this zone"):
        mesh_ca(m, {})
    # A stored Mesh whose body does not fit the model (an older version's): whether it has
    # mTLS cannot be told, so no CA is assumed; the error names the field.
    odd = mesh()
    odd.spec["mtls"]["backends"][0]["dpCert"] = {"rotation": {"expiration": "never"}}
    with pytest.raises(CertError, match=r"backends\[0\]\.dpCert\.rotation\.expiration"):
        mesh_ca(odd, {})
    found = mesh_ca(m, secrets_of(m, ca))
    assert found is not None and found.cert == ca.cert
    broken = secrets_of(m, ca)
    broken["default.ca-builtin-key-ca-1"].spec["data"] = "bm90IGEga2V5"
    with pytest.raises(CertError, match="unusable"):
        mesh_ca(m, broken)
    other = create_mesh_ca("other")
    with pytest.raises(CertError, match="CA of mesh 'other'"):
        mesh_ca(m, secrets_of(m, other))


def test_leaves_name_the_service_and_chain_to_the_ca(ca: MeshCA) -> None:
    clock = Clock()
    issuer = CertIssuer(dt.timedelta(hours=1), clock=clock)
    leaf = issuer.leaf_for(mesh(), ca, "web-1", "web")
    assert leaf.spiffe_id == "spiffe://default/web"
    assert verify_peer([leaf.cert], ca, now=T0) == "spiffe://default/web"
    assert leaf.cert.not_valid_after_utc == T0 + dt.timedelta(hours=1)
    record = issuer.record("default", "web-1")
    assert record is not None
    assert record.to_json() == {
        "certificateExpirationTime": "2030-01-01T13:00:00Z",
        "lastCertificateRegeneration": "2030-01-01T12:00:00Z",
        "certificateRegenerations": 1,
        "issuedBackend": "ca-1",
        "supportedBackends": ["ca-1"],
    }


def test_reused_until_due_then_rotated(ca: MeshCA) -> None:
    clock = Clock()
    issuer = CertIssuer(dt.timedelta(seconds=10), clock=clock)
    m = mesh()
    first = issuer.leaf_for(m, ca, "web-1", "web")
    # notBefore is a minute back (clock skew); rotation counts from the issue time.
    assert issuer.rotate_at("default", "web-1") == T0 + dt.timedelta(seconds=8)
    clock.now = T0 + dt.timedelta(seconds=7)
    assert issuer.leaf_for(m, ca, "web-1", "web") is first
    clock.now = T0 + dt.timedelta(seconds=8)
    second = issuer.leaf_for(m, ca, "web-1", "web")
    assert second is not first
    assert second.cert.serial_number != first.cert.serial_number
    assert issuer.rotate_at("default", "web-1") == clock.now + dt.timedelta(seconds=8)
    record = issuer.record("default", "web-1")
    assert record is not None and record.regenerations == 2


def test_reissued_when_the_ca_the_service_or_the_validity_changes(ca: MeshCA) -> None:
    issuer = CertIssuer(dt.timedelta(hours=1), clock=Clock())
    m = mesh()
    leaf = issuer.leaf_for(m, ca, "dp", "web")
    assert issuer.leaf_for(m, ca, "dp", "web") is leaf
    other_ca = create_mesh_ca("default", now=T0 - dt.timedelta(days=1))
    assert issuer.leaf_for(m, other_ca, "dp", "web").ca_cert == other_ca.cert
    assert issuer.leaf_for(m, other_ca, "dp", "api").spiffe_id == "spiffe://default/api"
    short = mesh(dpCert={"rotation": {"expiration": "10m"}})
    renewed = issuer.leaf_for(short, other_ca, "dp", "api")
    assert renewed.cert.not_valid_after_utc == T0 + dt.timedelta(minutes=10)
    assert issuer.issued_total == 4


def test_validity_from_the_mesh_or_the_default() -> None:
    default = dt.timedelta(hours=24)
    assert leaf_validity(mesh(), default) == default
    assert leaf_validity(mesh(dpCert={"rotation": {"expiration": "1h"}}), default) == (
        dt.timedelta(hours=1)
    )


def test_tiny_validities_do_not_rotate_in_a_loop() -> None:
    assert rotation_time(T0, T0 + dt.timedelta(milliseconds=100)) == T0 + dt.timedelta(seconds=1)
    with pytest.raises(ValueError):
        CertIssuer(dt.timedelta(0))
