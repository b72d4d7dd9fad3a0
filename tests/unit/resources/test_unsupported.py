"""The list of Kuma types meshfed does not have: consistent, disjoint from the registry, and
each with a reason."""

from __future__ import annotations

from meshfed.resources.types import default_registry
from meshfed.resources.unsupported import UNSUPPORTED_TYPES, Support, unsupported_type


def test_names_and_plurals_are_unique_and_not_served_types() -> None:
    registry = default_registry()
    assert len({t.name for t in UNSUPPORTED_TYPES}) == len(UNSUPPORTED_TYPES)
    assert len({t.plural for t in UNSUPPORTED_TYPES}) == len(UNSUPPORTED_TYPES)
    for entry in UNSUPPORTED_TYPES:
        assert registry.lookup(entry.name) is None and registry.lookup(entry.plural) is None
        assert entry.reason and entry.plural == entry.plural.lower()


def test_the_types_named_in_the_issue_are_listed() -> None:
    for name in [
        "MeshProxyPatch",
        "MeshGateway",
        "MeshTLS",
        "MeshTrust",
        "MeshIdentity",
        "MeshGatewayRoute",
    ]:
        assert unsupported_type(name) is not None, name


def test_lookup_by_name_or_plural_and_the_message() -> None:
    patch = unsupported_type("meshproxypatches")
    assert patch is not None and patch is unsupported_type("MeshProxyPatch")
    assert patch.support is Support.NEVER
    assert patch.message().startswith("MeshProxyPatch is not supported by meshfed: ")
    assert "Envoy" in patch.message()
    gateway = unsupported_type("MeshGateway")
    assert gateway is not None
    assert gateway.message().startswith("MeshGateway is not supported yet by meshfed: ")
    assert unsupported_type("MeshTimeout") is None and unsupported_type("nope") is None
