"""What a control plane (global or zone) does with its store when it starts: the default
Mesh on a fresh store, and where the store lives for the start-up line. Shared here so a
zone-cp does not load the global's modules to get them."""

from __future__ import annotations

from pathlib import Path

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL
from meshfed.resources.types.mesh import MESH
from meshfed.store.base import AlreadyExistsError, ResourceStore
from meshfed.store.etcd import EtcdStore

DEFAULT_MESH = "default"


async def create_default_mesh(store: ResourceStore, registry: Registry) -> bool:
    """Creates Mesh 'default' only if nothing was ever written to the store (revision 0), so a
    user who deleted it does not get it back on the next start. Returns whether it did.

    Not a leader job: it must exist before the API is ready. Replicas starting together on
    an empty etcd are safe: create-if-absent lets exactly one of them create it."""
    if await store.revision() != 0:
        return False
    mesh = resource_from_dict({"type": MESH.name, "name": DEFAULT_MESH}, registry)
    mesh.meta.labels[LABEL_ORIGIN] = ORIGIN_GLOBAL
    try:
        await store.create(mesh)
    except AlreadyExistsError:  # another replica sharing the store was first
        return False
    return True


# Kuma's default HostnameGenerators (kuma.io/docs/latest/networking/hostnamegenerator/,
# "Defaults") for Universal zones: the global's are synced to every zone, where they name local
# MeshServices, other zones' MeshServices, MeshMultiZoneServices and MeshExternalServices.
DEFAULT_HOSTNAME_GENERATORS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    (
        "local-universal-mesh-service",
        "meshService",
        "{{ .DisplayName }}.svc.mesh.local",
        {"kuma.io/origin": "zone"},
    ),
    (
        "synced-universal-mesh-service",
        "meshService",
        "{{ .DisplayName }}.svc.{{ .Zone }}.mesh.local",
        {"kuma.io/origin": "global", "kuma.io/env": "universal"},
    ),
    (
        "synced-mesh-multi-zone-service",
        "meshMultiZoneService",
        "{{ .DisplayName }}.mzsvc.mesh.local",
        {"kuma.io/origin": "global"},
    ),
    (
        "synced-mesh-external-service",
        "meshExternalService",
        "{{ .DisplayName }}.extsvc.mesh.local",
        {"kuma.io/origin": "global"},
    ),
)


async def create_default_hostname_generators(store: ResourceStore, registry: Registry) -> int:
    """Kuma's default HostnameGenerators, created with the default Mesh (on the first start
    only: a user may delete or change them). Returns how many it created."""
    created = 0
    for name, kind, template, labels in DEFAULT_HOSTNAME_GENERATORS:
        doc = {
            "type": "HostnameGenerator",
            "name": name,
            "spec": {"selector": {kind: {"matchLabels": labels}}, "template": template},
        }
        generator = resource_from_dict(doc, registry)
        generator.meta.labels[LABEL_ORIGIN] = ORIGIN_GLOBAL
        try:
            await store.create(generator)
            created += 1
        except AlreadyExistsError:  # another replica sharing the store was first
            continue
    return created


def store_location(kind: str, data_dir: Path, endpoints: str, store: ResourceStore) -> str:
    """Where the store lives, for the start-up log line."""
    if isinstance(store, EtcdStore):
        return f" at {endpoints} under {store.prefix}"
    return f" in {data_dir}" if kind == "sqlite" else ""
