"""The HTTP client's pure parts: paths, base URLs, error bodies, following `next`."""

from __future__ import annotations

import json

import pytest

from meshctl.client import (
    ApiClient,
    ApiError,
    collection_path,
    normalize_base_url,
    resource_path,
)
from meshctl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from meshfed.resources.types import default_registry

REG = default_registry()


def test_paths_follow_kuma() -> None:
    mtp = REG.get("MeshTrafficPermission")
    assert resource_path(mtp, "allow", "default") == "/meshes/default/meshtrafficpermissions/allow"
    assert collection_path(mtp, "default") == "/meshes/default/meshtrafficpermissions"
    assert collection_path(mtp, None) == "/meshtrafficpermissions"
    assert resource_path(REG.get("Mesh"), "m", "") == "/meshes/m"
    assert collection_path(REG.get("ZoneIngress"), None) == "/zoneingresses"
    assert resource_path(REG.get("Zone"), "../x", "") == "/zones/..%2Fx"


def test_base_url_forms() -> None:
    assert normalize_base_url("127.0.0.1:7681") == "http://127.0.0.1:7681"
    assert normalize_base_url("https://cp.example:443/") == "https://cp.example:443"
    for bad in ("ftp://x", "http://", "http://h:notaport"):
        with pytest.raises(CliError) as err:
            normalize_base_url(bad)
        assert err.value.exit_code == EXIT_USAGE


def test_kuma_error_body_is_parsed_with_every_field() -> None:
    body = {
        "type": "/std-errors",
        "status": 400,
        "title": "Resource is not valid",
        "detail": "2 problems",
        "invalid_parameters": [
            {"field": "spec.from[0].default.action", "reason": "must be one of Allow, Deny"},
            {"field": "", "reason": "general"},
        ],
    }
    err = ApiError.from_body(400, "Bad Request", json.dumps(body).encode())
    assert (err.status, err.title, err.detail) == (400, "Resource is not valid", "2 problems")
    assert err.message == "Resource is not valid: 2 problems"
    assert err.details == ["spec.from[0].default.action: must be one of Allow, Deny", "general"]
    assert err.exit_code == EXIT_FAILED


def test_non_kuma_error_body_shows_status_and_first_line() -> None:
    err = ApiError.from_body(502, "Bad Gateway", b"<html>upstream down</html>\nmore")
    assert err.message == "HTTP 502 Bad Gateway: <html>upstream down</html>"
    assert ApiError.from_body(500, "", b"").message == "HTTP 500"


def test_next_is_followed_through_our_own_address() -> None:
    client = ApiClient("http://127.0.0.1:7681")
    assert client._rebase("http://0.0.0.0:5681/meshes?offset=abc&size=2") == (
        "http://127.0.0.1:7681/meshes?offset=abc&size=2"
    )
    prefixed = ApiClient("https://proxy.example/meshfed")
    assert prefixed._rebase("http://10.0.0.1:5681/zones?offset=x") == (
        "https://proxy.example/meshfed/zones?offset=x"
    )
    assert client.url("/x", {"dryRun": "true"}) == "http://127.0.0.1:7681/x?dryRun=true"
