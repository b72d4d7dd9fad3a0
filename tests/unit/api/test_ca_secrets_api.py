"""The API refuses a mesh CA key or certificate that does not fit the stored other half."""

from __future__ import annotations

import base64

import pytest

from meshfed.pki.ca import create_mesh_ca
from tests.unit.api.conftest import Api, assert_std_error, mesh

CERT = "/meshes/default/secrets/default.ca-builtin-cert-ca-1"
KEY = "/meshes/default/secrets/default.ca-builtin-key-ca-1"
CA = create_mesh_ca("default")
OTHER = create_mesh_ca("default")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(name: str, data: str) -> dict[str, str]:
    return {"type": "Secret", "mesh": "default", "name": name, "data": data}


@pytest.fixture
async def ca_api(api: Api) -> Api:
    assert (await api.put("/meshes/default", mesh("default"))).status == 201
    for path, pem in ((CERT, CA.cert_pem), (KEY, CA.key_pem)):
        resp = await api.put(path, secret(path.rsplit("/", 1)[1], b64(pem)))
        assert resp.status == 201, await resp.text()
    return api


@pytest.mark.parametrize(
    ("path", "pem", "says"),
    [
        (KEY, OTHER.key_pem, "does not match"),
        (CERT, OTHER.cert_pem, "does not match"),
        (KEY, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM private"),
        (CERT, b"garbage", "PEM certificate"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
async def test_the_api_refuses_a_half_that_does_not_fit(
    ca_api: Api, path: str, pem: bytes, says: str, dry_run: bool
) -> None:
    before = await ca_api.snapshot()
    name = path.rsplit("/", 1)[1]
    resp = await ca_api.put(path + "?dryRun=true" * dry_run, secret(name, b64(pem)))
    body = await resp.json()
    assert resp.status == 400, body
    assert_std_error(body, 400)
    assert [p["field"] for p in body["invalid_parameters"]] == ["data"]
    assert says in body["invalid_parameters"][0]["reason"]
    assert await ca_api.snapshot() == before


async def test_the_api_accepts_the_matching_half_and_other_secrets(ca_api: Api) -> None:
    resp = await ca_api.put(KEY, secret("default.ca-builtin-key-ca-1", b64(CA.key_pem)))
    assert resp.status == 200
    resp = await ca_api.put("/meshes/default/secrets/s1", secret("s1", b64(b"anything")))
    assert resp.status == 201
