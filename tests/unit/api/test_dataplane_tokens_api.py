"""`POST /tokens/dataplane` (global and zone API): admin only, Kuma's body, the token as text;
every refusal names the problem and issues nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.auth import keyring
from meshfed.auth.credentials import ensure_admin_token, ensure_signing_key
from meshfed.auth.tokens import DataplaneClaims, TokenKind, Verified, verify
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from tests.unit.api.conftest import Api, start_api

PATH = "/tokens/dataplane"
BODY = {"mesh": "default", "tags": {"kuma.io/service": ["web"]}, "validFor": "24h"}


@pytest.fixture(params=[Mode.GLOBAL, Mode.ZONE])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Api, str]]:
    """The API with Mesh default and its key, and the admin token (at a zone the user-token
    keys and the mesh's key arrive from the global; here they are put in its store)."""
    extra = {"zone": "zone-1"} if request.param is Mode.ZONE else {}
    a, client = await start_api(request.param, anonymous=True, **extra)
    mesh = resource_from_dict({"type": "Mesh", "name": "default"}, default_registry())
    await a.store.create(mesh)
    await ensure_signing_key(a.store, TokenKind.DATAPLANE, "default")
    admin = await ensure_admin_token(a.store)
    try:
        yield a, admin
    finally:
        await client.close()
        await a.store.close()


async def post(api: Api, body: Any, token: str | None) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    resp = await api.client.post(PATH, json=body, headers=headers)
    return resp.status, await resp.text()


async def verified_of(api: Api, token: str) -> Verified:
    secrets = (await api.store.list("Secret", mesh="default")).items
    return verify(
        token, TokenKind.DATAPLANE, keyring.trusted_keys(TokenKind.DATAPLANE, secrets, "default")
    )


async def claims_of(api: Api, token: str) -> DataplaneClaims:
    claims = (await verified_of(api, token)).claims
    assert isinstance(claims, DataplaneClaims)
    return claims


async def test_an_admin_gets_a_token_as_text(api: tuple[Api, str]) -> None:
    a, admin = api
    body = {**BODY, "tags": {"kuma.io/service": ["web", "web"], "version": ["v1"]}}
    resp = await a.client.post(
        PATH, json={**body, "name": "web-1", "type": "dataplane"}, headers=_auth(admin)
    )
    assert resp.status == 200 and resp.content_type == "text/plain"
    token = await resp.text()
    claims = await claims_of(a, token)
    assert claims == DataplaneClaims(
        "default", {"kuma.io/service": ("web",), "version": ("v1",)}, "web-1"
    )
    left = (await verified_of(a, token)).expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23) < left <= dt.timedelta(hours=24)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_only_admins_get_tokens(api: tuple[Api, str]) -> None:
    a, _ = api
    status, text = await post(a, BODY, None)
    assert status == 401 and "needs an admin user token" in text
    status, text = await post(a, BODY, "garbage")
    assert status == 401 and "invalid user token" in text


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["mesh", "tags", "validFor"]),
        ([], []),
        ({**BODY, "extra": 1}, ["extra"]),
        ({**BODY, "mesh": "Bad Mesh"}, ["mesh"]),
        ({**BODY, "tags": {"version": ["v1"]}}, ["tags"]),
        ({**BODY, "tags": {"kuma.io/service": []}}, ["tags"]),
        ({**BODY, "tags": {"kuma.io/service": ["web"], "v": ["a b"]}}, ["tags['v']"]),
        ({**BODY, "tags": {"kuma.io/service": "web"}}, ["tags['kuma.io/service']"]),
        ({**BODY, "name": "Web 1"}, ["name"]),
        ({**BODY, "type": "ingress"}, ["type"]),
        ({**BODY, "validFor": "forever"}, ["validFor"]),
        ({**BODY, "validFor": "-1h"}, ["validFor"]),
        ({**BODY, "validFor": "99999d"}, ["validFor"]),
        ({**BODY, "validFor": 3600}, ["validFor"]),
    ],
)
async def test_bad_requests_name_their_fields(
    api: tuple[Api, str], body: Any, fields: list[str]
) -> None:
    a, admin = api
    before = await a.snapshot()
    resp = await a.client.post(PATH, json=body, headers=_auth(admin))
    assert resp.status == 400
    got = await resp.json()
    assert [p["field"] for p in got["invalid_parameters"]] == fields, got
    assert await a.snapshot() == before


async def test_an_unknown_mesh_or_one_without_its_key(api: tuple[Api, str]) -> None:
    a, admin = api
    status, text = await post(a, {**BODY, "mesh": "nope"}, admin)
    assert status == 404 and "nope" in text
    await a.store.create(resource_from_dict({"type": "Mesh", "name": "new"}, default_registry()))
    status, text = await post(a, {**BODY, "mesh": "new"}, admin)
    assert status == 400 and "mesh 'new' has no dataplane-token signing key yet" in text
    assert not (await a.store.list("Secret", mesh="new")).items  # the API makes no key


async def test_the_route_is_in_the_openapi_document(api: tuple[Api, str]) -> None:
    a, _ = api
    status, doc = await a.json("GET", "/openapi.json")
    assert status == 200 and "post" in doc["paths"][PATH]
