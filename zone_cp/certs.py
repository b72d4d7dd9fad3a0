"""Dataplane certificates: zone-cp issues each sidecar a short-lived leaf from its mesh's CA.

The CA comes from the global as two Secrets (meshfed/pki/ca_names.py names them); every zone has
the same one, so a certificate issued here verifies in every other zone. A leaf names
`spiffe://<mesh>/<service>` (the service of the dataplane's first inbound, the identity its
config carries) and, as `kuma://<tag>/<value>`, the tags of that service's inbounds with this
zone (decision 152), has its own P-256 key, and is valid for `validity` (zone-cp's
`--dp-cert-validity`, default 24 h; a Mesh backend's `dpCert.rotation.expiration` overrides
it, as in Kuma).

Rotation: a leaf is replaced once ROTATION_FRACTION of its validity has passed, counted from
when it was issued. (Not from its notBefore, which is backdated by pki.ca.CLOCK_SKEW for
slow peer clocks: with a 10 s validity and a 60 s backdate, that would make every fresh leaf
"due" at once.) The config server asks `rotate_at()` when to rebuild, and a rebuilt config
carries the new leaf; connections opened with the old one go on undisturbed.

Pure apart from the clock: the caller passes the resources it holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from meshfed.pki.ca import MeshCA, ca_from_secret_data, utcnow
from meshfed.pki.ca_names import (
    UnreadableMesh,
    cert_secret_name,
    enabled_builtin_backend,
    key_secret_name,
)
from meshfed.pki.leaf import DEFAULT_LEAF_VALIDITY, Leaf, issue_leaf
from meshfed.pki.spiffe import PkiError
from meshfed.pki.tag_sans import NO_TAGS, TagSet
from meshfed.resources.model import Resource

ROTATION_FRACTION: Final = 0.8
# Never rotate sooner than this after issuing, whatever the validity: a tiny validity must
# not turn into a tight loop of new certificates and configs.
MIN_ROTATION_DELAY: Final = dt.timedelta(seconds=1)

Clock = Callable[[], dt.datetime]


class CertError(Exception):
    """No certificate can be issued yet (no CA received, or an unusable one); says why."""


def mesh_ca(mesh: Resource, secrets: Mapping[str, Resource]) -> MeshCA | None:
    """The CA of `mesh` from its Secrets (`secrets`: name -> Secret of that mesh); None when
    the mesh has no builtin mTLS. CertError when the CA has not arrived or is unusable."""
    try:
        backend = enabled_builtin_backend(mesh)
    except UnreadableMesh as exc:
        raise CertError(str(exc)) from None
    if backend is None:
        return None
    name = mesh.meta.name
    cert = secrets.get(cert_secret_name(name, backend.name))
    key = secrets.get(key_secret_name(name, backend.name))
    if cert is None or key is None:
        raise CertError(
            f"mesh {name!r} has mTLS on (backend {backend.name!r}) but its CA has not "
            "reached this zone yet (it is created at the global and synced)"
        )
    try:
        ca = ca_from_secret_data({"cert": cert.spec.get("data"), "key": key.spec.get("data")})
    except PkiError as exc:
        raise CertError(f"mesh {name!r}: its CA secrets are unusable: {exc}") from None
    if ca.mesh != name:
        raise CertError(f"mesh {name!r}: its CA secrets hold the CA of mesh {ca.mesh!r}")
    return ca


def leaf_validity(mesh: Resource, default: dt.timedelta) -> dt.timedelta:
    """The enabled backend's `dpCert.rotation.expiration`, else `default`."""
    backend = enabled_builtin_backend(mesh)
    rotation = backend.dp_cert.rotation if backend and backend.dp_cert else None
    return rotation.expiration if rotation and rotation.expiration else default


def rotation_time(issued_at: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """When a leaf issued at `issued_at` should be replaced."""
    return issued_at + max((not_after - issued_at) * ROTATION_FRACTION, MIN_ROTATION_DELAY)


def _fingerprint(ca: MeshCA) -> str:
    return hashlib.sha256(ca.cert_pem).hexdigest()


@dataclass(frozen=True)
class Issued:
    leaf: Leaf
    ca: str  # fingerprint of the CA certificate that signed it
    service: str
    validity: dt.timedelta
    issued_at: dt.datetime
    rotate_at: dt.datetime
    tags: TagSet = NO_TAGS


@dataclass
class CertRecord:
    """What DataplaneInsight shows about a dataplane's certificates (Kuma's `mTLS` block)."""

    regenerations: int = 0
    last_regeneration: dt.datetime | None = None
    expiration: dt.datetime | None = None
    backend: str = ""

    def to_json(self) -> dict[str, Any]:
        def text(when: dt.datetime | None) -> str | None:
            return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "certificateExpirationTime": text(self.expiration),
            "lastCertificateRegeneration": text(self.last_regeneration),
            "certificateRegenerations": self.regenerations,
            "issuedBackend": self.backend,
            "supportedBackends": [self.backend] if self.backend else [],
        }


class CertIssuer:
    """Leaves per dataplane, reissued when due, when the CA changes, or when the dataplane's
    service, tags or the validity changes."""

    def __init__(self, validity: dt.timedelta = DEFAULT_LEAF_VALIDITY, clock: Clock = utcnow):
        if validity <= dt.timedelta(0):
            raise ValueError("certificate validity must be positive")
        self.validity = validity
        self._clock = clock
        self._issued: dict[tuple[str, str], Issued] = {}
        self.records: dict[tuple[str, str], CertRecord] = {}
        self.issued_total = 0

    def leaf_for(
        self, mesh: Resource, ca: MeshCA, dataplane: str, service: str, tags: TagSet = NO_TAGS
    ) -> Leaf:
        """A valid leaf for `dataplane` (a name in `mesh`) naming `service`, with `tags` as
        `kuma://` URI SANs (meshfed/policy/callers.py `certified_tags` says which)."""
        key = (mesh.meta.name, dataplane)
        validity = leaf_validity(mesh, self.validity)
        fingerprint = _fingerprint(ca)
        now = self._clock()
        current = self._issued.get(key)
        if (
            current is not None
            and current.ca == fingerprint
            and current.service == service
            and current.tags == tags
            and current.validity == validity
            and now < current.rotate_at
        ):
            return current.leaf
        try:
            leaf = issue_leaf(ca, service, validity=validity, now=now, tags=tags)
        except PkiError as exc:
            raise CertError(f"cannot issue a certificate for {service!r}: {exc}") from None
        not_after = leaf.cert.not_valid_after_utc
        self._issued[key] = Issued(
            leaf, fingerprint, service, validity, now, rotation_time(now, not_after), tags
        )
        record = self.records.setdefault(key, CertRecord())
        record.regenerations += 1
        record.last_regeneration = now
        record.expiration = not_after
        backend = enabled_builtin_backend(mesh)
        record.backend = backend.name if backend else ""
        self.issued_total += 1
        return leaf

    def rotate_at(self, mesh: str, dataplane: str) -> dt.datetime | None:
        issued = self._issued.get((mesh, dataplane))
        return None if issued is None else issued.rotate_at

    def first_rotation(self, prefix: str) -> dt.datetime | None:
        """When the first leaf whose name starts with `prefix` is due (a zone egress holds
        one per external service: zone_cp.egress_build.egress_identity)."""
        times = [i.rotate_at for (_, name), i in self._issued.items() if name.startswith(prefix)]
        return min(times) if times else None

    def record(self, mesh: str, dataplane: str) -> CertRecord | None:
        return self.records.get((mesh, dataplane))

    def forget(self, mesh: str, dataplane: str) -> None:
        """The dataplane is gone: its next connection gets a fresh leaf."""
        self._issued.pop((mesh, dataplane), None)
