"""Where a mesh's builtin CA lives: the names of its two Secrets, and which backend needs one.

The global creates the CA (global_cp/mesh_ca.py) and every zone issues dataplane certificates
from it (zone_cp/certs.py); both find it by these names, Kuma's:
`<mesh>.ca-builtin-cert-<backend>` and `<mesh>.ca-builtin-key-<backend>`.
"""

from __future__ import annotations

from typing import Any, Final

from meshfed.resources.model import Resource
from meshfed.resources.types.common import as_list, dig

BUILTIN: Final = "builtin"


def cert_secret_name(mesh: str, backend: str) -> str:
    return f"{mesh}.ca-builtin-cert-{backend}"


def key_secret_name(mesh: str, backend: str) -> str:
    return f"{mesh}.ca-builtin-key-{backend}"


def enabled_builtin_backend(mesh: Resource) -> dict[str, Any] | None:
    """The backend named by `mtls.enabledBackend` when it is a builtin one, else None."""
    enabled = dig(mesh.spec, "mtls", "enabledBackend")
    if not isinstance(enabled, str) or not enabled:
        return None
    for backend in as_list(dig(mesh.spec, "mtls", "backends")):
        if isinstance(backend, dict) and backend.get("name") == enabled:
            return backend if backend.get("type") == BUILTIN else None
    return None
