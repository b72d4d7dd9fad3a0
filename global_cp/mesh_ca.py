"""Builtin mesh CAs, created at the global and synced to every zone as Secrets.

A Mesh whose `mtls.enabledBackend` names a backend of type `builtin` gets one self-signed CA
(meshfed.pki) for that backend, stored in the mesh as two Secrets named as Kuma names them:
`<mesh>.ca-builtin-cert-<backend>` (the certificate) and `<mesh>.ca-builtin-key-<backend>`
(the private key), each `data` the base64 of the PEM. Secret is a global-to-zone type, so
every zone gets the same trust root and its zone-cp issues dataplane certificates from it
(zone_cp/certs.py). The key leaves the global only that way.

Created once: both Secrets are written in one store batch that expects both absent, so two
replicas racing (or a restart) can never produce two CAs; the loser sees AlreadyExists and
uses the winner's. A CA that exists is never regenerated, except when half of it is missing
(a Secret deleted by hand): a lone certificate cannot sign and a lone key cannot be trusted,
so a fresh pair replaces it (logged).

Backend settings: `conf.caCert.RSAbits` (2048 or 4096) makes an RSA CA instead of the default
ECDSA P-256; `conf.caCert.expiration` sets its lifetime (default 10 years, as Kuma).

`MeshCaJob.run` is the global leader's singleton job: it follows Meshes and Secrets in the
store and ensures every CA that should exist, each time one of them changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Final

from meshfed.pki.ca import (
    DEFAULT_CA_VALIDITY,
    KeyAlgorithm,
    MeshCA,
    ca_to_secret_data,
    create_mesh_ca,
)
from meshfed.pki.ca_names import cert_secret_name, enabled_builtin_backend, key_secret_name
from meshfed.pki.spiffe import PkiError
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Meta, Resource
from meshfed.resources.types.common import dig
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.secret import SECRET
from meshfed.resources.values import parse_duration
from meshfed.store.base import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore
from meshfed.store.cache import StoreCache
from meshfed.store.mirror import resource_view

log = logging.getLogger("global_cp.mesh_ca")

# Marks the Secrets this module made (and which backend they serve), for readers and tools.
LABEL_CA_BACKEND: Final = "meshfed.io/ca-backend"


class MeshCaError(ValueError):
    """A Mesh whose CA cannot be made as configured; the message names the field."""


@dataclass(frozen=True)
class CaPlan:
    """The CA one Mesh should have."""

    mesh: str
    backend: str
    algorithm: KeyAlgorithm
    validity: dt.timedelta


def plan_for(mesh: Resource) -> CaPlan | None:
    """What CA `mesh` needs (None: no builtin mTLS); MeshCaError for settings it cannot honour
    (the validator refuses them, but a stored Mesh may predate it)."""
    backend = enabled_builtin_backend(mesh)
    if backend is None:
        return None
    where = f"mtls.backends[{backend['name']}].conf.caCert"
    bits = dig(backend, "conf", "caCert", "RSAbits")
    if bits is None:
        algorithm = KeyAlgorithm.ECDSA_P256
    elif bits == 2048:
        algorithm = KeyAlgorithm.RSA_2048
    elif bits == 4096:
        algorithm = KeyAlgorithm.RSA_4096
    else:
        raise MeshCaError(f"{where}.RSAbits: {bits!r} is not 2048 or 4096")
    validity = DEFAULT_CA_VALIDITY
    expiration = dig(backend, "conf", "caCert", "expiration")
    if expiration is not None:
        nanos = parse_duration(expiration, long_units=True) if isinstance(expiration, str) else None
        if nanos is None or nanos <= 0:
            raise MeshCaError(f"{where}.expiration: {expiration!r} is not a positive duration")
        validity = dt.timedelta(microseconds=nanos // 1000)
    return CaPlan(mesh.meta.name, str(backend["name"]), algorithm, validity)


def ca_secrets(plan: CaPlan, ca: MeshCA) -> tuple[Resource, Resource]:
    """The certificate and key Secrets of a CA, as the global stores them."""
    data = ca_to_secret_data(ca)
    labels = {LABEL_ORIGIN: ORIGIN_GLOBAL, LABEL_CA_BACKEND: plan.backend}
    cert = Resource(
        SECRET.name,
        Meta(name=cert_secret_name(plan.mesh, plan.backend), mesh=plan.mesh, labels=dict(labels)),
        {"data": data["cert"]},
    )
    key = Resource(
        SECRET.name,
        Meta(name=key_secret_name(plan.mesh, plan.backend), mesh=plan.mesh, labels=dict(labels)),
        {"data": data["key"]},
    )
    return cert, key


async def _version(store: ResourceStore, mesh: str, name: str) -> str | None:
    try:
        return (await store.get(SECRET.name, mesh, name)).meta.version
    except NotFoundError:
        return None


async def ensure_ca(store: ResourceStore, plan: CaPlan) -> bool:
    """Creates the CA of `plan` unless it exists; True if this call created it. Safe to run
    on several replicas at once: the batch expects the versions it saw."""
    cert_name = cert_secret_name(plan.mesh, plan.backend)
    key_name = key_secret_name(plan.mesh, plan.backend)
    cert_version = await _version(store, plan.mesh, cert_name)
    key_version = await _version(store, plan.mesh, key_name)
    if cert_version is not None and key_version is not None:
        return False
    if cert_version is not None or key_version is not None:
        missing = key_name if key_version is None else cert_name
        log.warning(
            "mesh %s: CA secret %s is missing, so the CA is unusable; creating a new one "
            "(dataplanes get new certificates)",
            plan.mesh,
            missing,
        )
    # Key generation (RSA 4096 takes a while) must not hold up the event loop.
    ca = await asyncio.to_thread(
        create_mesh_ca, plan.mesh, algorithm=plan.algorithm, validity=plan.validity
    )
    cert, key = ca_secrets(plan, ca)
    try:
        await store.write_batch(
            [cert, key], [], expected={cert.key: cert_version, key.key: key_version}
        )
    except (AlreadyExistsError, ConflictError, NotFoundError):
        return False  # another replica was first: its CA stands
    log.info(
        "mesh %s: created the %s CA of backend %s (valid until %s)",
        plan.mesh,
        plan.algorithm,
        plan.backend,
        ca.cert.not_valid_after_utc.isoformat(),
    )
    return True


WATCHED: Final = (MESH.name, SECRET.name)  # what the job reads from the store cache


class MeshCaJob:
    """Follows Meshes and Secrets; ensures the CA of every Mesh with builtin mTLS."""

    def __init__(self, store: ResourceStore, cache: StoreCache | None = None) -> None:
        """`cache`: the process's store cache (None: one of its own, for each term)."""
        self._store = store
        self._cache = cache
        self.created = 0  # CAs this replica created
        self.failures = 0
        self.problems: dict[str, str] = {}  # mesh -> why its CA cannot be made

    async def run(self) -> None:
        """Runs until cancelled (the end of the leader's term)."""
        mirror = resource_view(self._store, WATCHED, self._cache)
        dirty = asyncio.Event()
        unlisten = mirror.listen(lambda type_name, key, res: dirty.set())
        await mirror.start()
        try:
            while True:
                dirty.clear()
                meshes = [r for r, _ in mirror.entries(MESH.name)]
                held = {(r.mesh, r.name) for r, _ in mirror.entries(SECRET.name)}
                await self.ensure_all(meshes, held)
                await dirty.wait()
        finally:
            unlisten()
            with contextlib.suppress(Exception):
                await mirror.stop()

    async def ensure_all(
        self, meshes: list[Resource], held: set[tuple[str, str]] | None = None
    ) -> None:
        """`held`: the (mesh, name) of the Secrets known to exist, to skip the store reads
        for CAs already complete (None: ask the store)."""
        for mesh in meshes:
            try:
                plan = plan_for(mesh)
            except MeshCaError as exc:
                if self.problems.get(mesh.meta.name) != str(exc):
                    log.error("mesh %s: no CA can be made: %s", mesh.meta.name, exc)
                self.problems[mesh.meta.name] = str(exc)
                continue
            self.problems.pop(mesh.meta.name, None)
            if plan is None:
                continue
            names = {
                cert_secret_name(plan.mesh, plan.backend),
                key_secret_name(plan.mesh, plan.backend),
            }
            if held is not None and all((plan.mesh, n) in held for n in names):
                continue
            try:
                if await ensure_ca(self._store, plan):
                    self.created += 1
            except PkiError as exc:
                self.failures += 1
                log.error("mesh %s: cannot create its CA: %s", mesh.meta.name, exc)
