"""Where a mesh's builtin CA lives: the names of its two Secrets, and which backend needs one.

The global creates the CA (global_cp/mesh_ca.py) and every zone issues dataplane certificates
from it (zone_cp/certs.py); both find it by these names, Kuma's:
`<mesh>.ca-builtin-cert-<backend>` and `<mesh>.ca-builtin-key-<backend>`.
"""

from __future__ import annotations

from typing import Final

from meshfed.resources.model import Resource
from meshfed.resources.models.mesh import Backend, MeshSpec
from meshfed.resources.typed import spec_as, unfit_reason

BUILTIN: Final = "builtin"


class UnreadableMesh(ValueError):
    """A stored Mesh whose body does not fit the model (an older version wrote it): whether
    it has mTLS cannot be told, so no CA is made or used for it (rather than none assumed)."""


def cert_secret_name(mesh: str, backend: str) -> str:
    return f"{mesh}.ca-builtin-cert-{backend}"


def key_secret_name(mesh: str, backend: str) -> str:
    return f"{mesh}.ca-builtin-key-{backend}"


def enabled_builtin_backend(mesh: Resource) -> Backend | None:
    """The backend named by `mtls.enabledBackend` when it is a builtin one, else None;
    UnreadableMesh if the stored body does not fit the model."""
    spec = spec_as(mesh, MeshSpec)
    if spec is None:
        reason = unfit_reason(mesh, MeshSpec)
        raise UnreadableMesh(f"mesh {mesh.meta.name!r} is not readable: {reason}")
    backend = spec.mtls.enabled() if spec.mtls is not None else None
    return backend if backend is not None and backend.type == BUILTIN else None
