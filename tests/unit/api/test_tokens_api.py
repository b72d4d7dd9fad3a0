"""Issuing user tokens, rotating signing keys and retiring them through the global's API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from meshfed.api.user_tokens import parse_user_token_request
from meshfed.auth import keyring
from meshfed.auth.tokens import TokenKind, UserClaims, verify
from meshfed.resources.descriptors import Mode
from meshfed.resources.errors import ValidationError
from tests.auth_support import bearer
from tests.support import async_wait_until
from tests.unit.api.conftest import Api, assert_std_error, mesh, start_api


async def trusted(api: Api) -> Any:
    secrets = (await api.store.list(keyring.GLOBAL_SECRET)).items
    return keyring.trusted_keys(TokenKind.USER, secrets)


async def user_token(api: Api, body: dict[str, Any]) -> tuple[int, str]:
    resp = await api.client.post("/tokens/user", json=body)
    return resp.status, await resp.text()


async def test_an_admin_issues_a_user_token_as_text(api: Api) -> None:
    body = {"name": "jane", "groups": ["team-a", "team-a", "ops"], "validFor": "24h"}
    resp = await api.client.post("/tokens/user", json=body)
    assert resp.status == 200 and resp.content_type == "text/plain"
    token = await resp.text()
    verified = verify(token, TokenKind.USER, await trusted(api))
    assert verified.claims == UserClaims("jane", ("team-a", "ops"))
    left = verified.expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23) < left <= dt.timedelta(hours=24)
    # The user may read, not write.
    jane = bearer(token)
    assert (await api.client.get("/meshes", headers=jane)).status == 200
    assert (await api.client.put("/meshes/x", json=mesh("x"), headers=jane)).status == 403


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["name", "validFor"]),
        ({"name": "", "validFor": "1h"}, ["name"]),
        ({"name": "j", "validFor": "1d"}, ["validFor"]),
        ({"name": "j", "validFor": "-1h"}, ["validFor"]),
        ({"name": "j", "validFor": "100000h"}, ["validFor"]),
        ({"name": "j", "validFor": 3600}, ["validFor"]),
        ({"name": "j", "groups": "admins", "validFor": "1h"}, ["groups"]),
        ({"name": "j", "groups": [""], "validFor": "1h"}, ["groups"]),
        ({"name": "j", "validFor": "1h", "admin": True}, ["admin"]),
    ],
)
async def test_a_bad_request_is_400_naming_each_field(
    api: Api, body: dict[str, Any], fields: list[str]
) -> None:
    before = await api.snapshot()
    resp = await api.client.post("/tokens/user", json=body)
    got = await resp.json()
    assert resp.status == 400, got
    assert_std_error(got, 400)
    assert [p["field"] for p in got["invalid_parameters"]] == fields
    assert await api.snapshot() == before


def test_request_parsing_is_pure() -> None:
    claims, valid = parse_user_token_request({"name": " jane ", "validFor": "90m"})
    assert claims == UserClaims("jane", ()) and valid == dt.timedelta(minutes=90)
    with pytest.raises(ValidationError):
        parse_user_token_request(["not", "an", "object"])


async def test_zones_do_not_issue_user_tokens() -> None:
    zone, client = await start_api(Mode.ZONE, zone="zone-1")
    try:
        resp = await client.post("/tokens/user", json={"name": "j", "validFor": "1h"})
        assert resp.status == 404
        assert (await client.post("/tokens/signing-keys/user")).status == 404
    finally:
        await client.close()
        await zone.store.close()


async def test_rotation_then_retiring_the_old_key_in_one_step(api: Api) -> None:
    old = await user_token(api, {"name": "old", "groups": ["mesh-system:admin"], "validFor": "1h"})
    resp = await api.client.post("/tokens/signing-keys/user")
    assert resp.status == 201 and await resp.json() == {"name": "user-token-signing-key-2"}
    names = {r.meta.name for r in (await api.store.list(keyring.GLOBAL_SECRET)).items}
    assert "user-token-signing-public-key-2" in names
    new = await user_token(api, {"name": "new", "groups": ["mesh-system:admin"], "validFor": "1h"})
    assert verify(new[1], TokenKind.USER, await trusted(api)).kid == "user-token-signing-key-2"

    # Both work (the new key within the verifier's cache time) until the old key is
    # deleted; deleting it retires its public half too.
    async def accepted(token: str) -> bool:
        return (await api.client.get("/global-secrets", headers=bearer(token))).status == 200

    await async_wait_until(lambda: accepted(new[1]), timeout=5, what="the new key trusted")
    assert await accepted(old[1])
    resp = await api.client.delete(
        "/global-secrets/user-token-signing-key-1", headers=bearer(new[1])
    )
    assert resp.status == 200, await resp.text()
    names = {r.meta.name for r in (await api.store.list(keyring.GLOBAL_SECRET)).items}
    assert "user-token-signing-public-key-1" not in names
    assert "user-token-signing-public-key-2" in names

    async def refused() -> bool:
        return not await accepted(old[1])

    await async_wait_until(refused, timeout=5, what="the old key's tokens refused")
    assert await accepted(new[1])


async def test_a_public_key_put_by_hand_is_replaced_by_the_real_one(api: Api) -> None:
    before = await api.store.get(keyring.GLOBAL_SECRET, "", "user-token-signing-public-key-1")
    forged = {"type": "GlobalSecret", "name": "user-token-signing-public-key-1", "data": "eA=="}
    resp = await api.client.put("/global-secrets/user-token-signing-public-key-1", json=forged)
    assert resp.status == 200
    after = await api.store.get(keyring.GLOBAL_SECRET, "", "user-token-signing-public-key-1")
    assert after.spec == before.spec


async def test_an_unknown_signing_key_kind_is_404(api: Api) -> None:
    before = await api.snapshot()
    resp = await api.client.post("/tokens/signing-keys/dataplane")
    assert resp.status == 404 and "zone, user" in (await resp.json())["detail"]
    assert await api.snapshot() == before
