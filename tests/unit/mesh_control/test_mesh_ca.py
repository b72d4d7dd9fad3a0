"""Builtin mesh CAs at the global: what a Mesh asks for, created once (two replicas racing
make one CA), never regenerated, a half-deleted CA replaced, and the job following meshes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from global_cp.mesh_ca import CaPlan, MeshCaError, MeshCaJob, ensure_ca, plan_for
from meshfed.pki.ca import KeyAlgorithm, ca_from_secret_data
from meshfed.pki.ca_names import cert_secret_name, key_secret_name
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until


def mesh(name: str = "default", **backend: Any) -> Resource:
    """A Mesh with builtin mTLS; `backend` adds fields to its backend ca-1."""
    doc: dict[str, Any] = {
        "type": "Mesh",
        "name": name,
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin", **backend}],
        },
    }
    return resource_from_dict(doc, default_registry())


def plain_mesh(name: str = "default") -> Resource:
    return resource_from_dict({"type": "Mesh", "name": name}, default_registry())


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


async def stored_ca(store: MemoryStore, mesh_name: str = "default", backend: str = "ca-1") -> Any:
    cert = await store.get("Secret", mesh_name, cert_secret_name(mesh_name, backend))
    key = await store.get("Secret", mesh_name, key_secret_name(mesh_name, backend))
    return ca_from_secret_data({"cert": cert.spec["data"], "key": key.spec["data"]})


def test_plan_follows_the_enabled_builtin_backend() -> None:
    assert plan_for(plain_mesh()) is None
    plan = plan_for(mesh())
    assert plan == CaPlan("default", "ca-1", KeyAlgorithm.ECDSA_P256, dt.timedelta(days=3650))
    rsa_plan = plan_for(mesh(conf={"caCert": {"RSAbits": 4096, "expiration": "1y"}}))
    assert rsa_plan is not None
    assert rsa_plan.algorithm is KeyAlgorithm.RSA_4096
    assert rsa_plan.validity == dt.timedelta(days=365)
    off = resource_from_dict(
        {
            "type": "Mesh",
            "name": "m",
            "mtls": {"backends": [{"name": "ca-1", "type": "builtin"}]},
        },
        default_registry(),
    )
    assert plan_for(off) is None  # backends listed but none enabled


def test_key_sizes_the_ca_cannot_make_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        mesh(conf={"caCert": {"RSAbits": 3072}})
    assert info.value.errors[0].field == "mtls.backends[0].conf.caCert.RSAbits"
    assert "2048- or 4096-bit" in info.value.errors[0].reason
    stored = mesh()
    stored.spec["mtls"]["backends"][0]["conf"] = {"caCert": {"RSAbits": 3072}}  # an old store
    with pytest.raises(MeshCaError, match="RSAbits"):
        plan_for(stored)


async def test_creates_both_secrets_once(store: MemoryStore) -> None:
    plan = plan_for(mesh())
    assert plan is not None
    assert await ensure_ca(store, plan)
    ca = await stored_ca(store)
    assert ca.mesh == "default"
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    cert = await store.get("Secret", "default", "default.ca-builtin-cert-ca-1")
    assert cert.meta.labels["kuma.io/origin"] == "global"
    assert base64.b64decode(cert.spec["data"]).startswith(b"-----BEGIN CERTIFICATE-----")
    revision = await store.revision()

    assert not await ensure_ca(store, plan)  # a restart: nothing regenerated
    assert await store.revision() == revision
    assert (await stored_ca(store)).cert == ca.cert


async def test_two_replicas_racing_make_one_ca(store: MemoryStore) -> None:
    plan = plan_for(mesh(conf={"caCert": {"RSAbits": 2048}}))
    assert plan is not None
    results = await asyncio.gather(*(ensure_ca(store, plan) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    ca = await stored_ca(store)  # the pair that won matches: cert and key of one CA
    assert isinstance(ca.key, rsa.RSAPrivateKey) and ca.key.key_size == 2048


async def test_a_half_deleted_ca_is_replaced_whole(store: MemoryStore) -> None:
    plan = plan_for(mesh())
    assert plan is not None
    await ensure_ca(store, plan)
    before = await stored_ca(store)
    await store.delete("Secret", "default", key_secret_name("default", "ca-1"))
    assert await ensure_ca(store, plan)
    after = await stored_ca(store)
    assert after.cert != before.cert


async def test_the_job_follows_meshes(store: MemoryStore) -> None:
    await store.create(plain_mesh("quiet"))
    job = MeshCaJob(store)
    task = asyncio.create_task(job.run())
    try:
        await store.create(mesh("payments"))
        await async_wait_until(
            lambda: store_has(store, "payments", cert_secret_name("payments", "ca-1")),
            what="CA of mesh payments",
        )
        # A mesh that turns mTLS on later gets its CA too; one without mTLS never does.
        await store.update(mesh("quiet"))
        await async_wait_until(
            lambda: store_has(store, "quiet", key_secret_name("quiet", "ca-1")),
            what="CA of mesh quiet",
        )
        assert job.created == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [r.name for r in (await store.list("Secret")).items] == [
        "payments.ca-builtin-cert-ca-1",
        "payments.ca-builtin-key-ca-1",
        "quiet.ca-builtin-cert-ca-1",
        "quiet.ca-builtin-key-ca-1",
    ]


async def test_the_job_reports_meshes_it_cannot_serve(store: MemoryStore) -> None:
    bad = mesh("odd")
    bad.spec["mtls"]["backends"][0]["conf"] = {"caCert": {"expiration": "never"}}
    job = MeshCaJob(store)
    await job.ensure_all([bad, mesh("fine")])
    assert "expiration" in job.problems["odd"]
    assert await store_has(store, "fine", cert_secret_name("fine", "ca-1"))
    assert (await store.list("Secret", "odd")).items == []


async def store_has(store: MemoryStore, mesh_name: str, name: str) -> bool:
    return any(r.name == name for r in (await store.list("Secret", mesh_name)).items)
