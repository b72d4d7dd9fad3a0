"""TYPE as typed by a user -> descriptor."""

from __future__ import annotations

import pytest

from meshctl.errors import EXIT_USAGE, CliError
from meshctl.kinds import known_types, resolve_type
from meshfed.resources.types import default_registry


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("MeshTrafficPermission", "MeshTrafficPermission"),
        ("meshtrafficpermissions", "MeshTrafficPermission"),
        ("MTP", "MeshTrafficPermission"),
        ("meshretries", "MeshRetry"),
        ("Mesh", "Mesh"),
        ("meshes", "Mesh"),
        ("dp", "Dataplane"),
        ("zi", "ZoneIngress"),
        ("zone-insights", "ZoneInsight"),
    ],
)
def test_names_plurals_and_short_names_any_case(typed: str, expected: str) -> None:
    assert resolve_type(default_registry(), typed).name == expected


def test_unknown_type_lists_every_known_type_and_is_a_usage_error() -> None:
    registry = default_registry()
    with pytest.raises(CliError) as err:
        resolve_type(registry, "meshbananas")
    assert err.value.exit_code == EXIT_USAGE
    assert "'meshbananas'" in err.value.message
    assert len(err.value.details) == len(registry.names())
    assert "MeshTrafficPermission (meshtrafficpermissions, mtp)" in err.value.details


def test_known_types_do_not_repeat_the_lowercased_name() -> None:
    lines = known_types(default_registry())
    assert "Mesh (meshes)" in lines


def test_a_kuma_type_meshfed_does_not_have_says_why() -> None:
    with pytest.raises(CliError) as info:
        resolve_type(default_registry(), "meshgateways")
    assert "MeshGateway is not supported yet by meshfed" in str(info.value)
