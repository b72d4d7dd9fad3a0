"""Mesh PKI: the builtin mesh CA, SPIFFE leaf certificates, and mTLS contexts built from them."""

from meshfed.pki.ca import (
    KeyAlgorithm,
    MeshCA,
    ca_from_secret_data,
    ca_to_secret_data,
    create_mesh_ca,
)
from meshfed.pki.leaf import Leaf, issue_leaf, rotation_due, rotation_time, verify_peer
from meshfed.pki.spiffe import PkiError, SpiffeId, parse_spiffe_id, service_id
from meshfed.pki.tls import (
    PeerIdentityError,
    check_peer_id,
    client_context,
    load_leaf,
    peer_spiffe_id,
    server_context,
)

__all__ = [
    "KeyAlgorithm",
    "Leaf",
    "MeshCA",
    "PeerIdentityError",
    "PkiError",
    "SpiffeId",
    "ca_from_secret_data",
    "ca_to_secret_data",
    "check_peer_id",
    "client_context",
    "create_mesh_ca",
    "issue_leaf",
    "load_leaf",
    "parse_spiffe_id",
    "peer_spiffe_id",
    "rotation_due",
    "rotation_time",
    "server_context",
    "service_id",
    "verify_peer",
]
