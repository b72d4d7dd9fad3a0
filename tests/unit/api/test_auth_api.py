"""Who may call what, through the real aiohttp app: every refusal says why (401/403) and
leaves the store unchanged; secret data never reaches an anonymous or non-admin caller."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.api.app import build_app
from meshfed.api.auth import NO_KEYS_YET, refusal_detail
from meshfed.api.context import ApiContext
from meshfed.auth import keyring
from meshfed.auth.credentials import ensure_signing_key, publish_public_keys
from meshfed.auth.tokens import (
    ADMIN_GROUP,
    SigningKey,
    TokenError,
    TokenKind,
    UserClaims,
    ZoneClaims,
    ZoneScope,
    issue,
    verify,
)
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.auth_support import admin_headers, bearer
from tests.support import async_wait_until
from tests.unit.api.conftest import Api, assert_std_error, mesh, start_api

HOUR = dt.timedelta(hours=1)
CA_KEY = "/meshes/default/secrets/default.ca-builtin-key-ca-1"
SECRET_DATA = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nsecret\n").decode()
MTP_ALLOW_ALL = {
    "type": "MeshTrafficPermission",
    "name": "allow-all",
    "mesh": "default",
    "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
    },
}


@pytest.fixture
async def anon() -> AsyncIterator[Api]:
    """An API whose client sends no token; the store holds a mesh and a secret already."""
    a, client = await start_api(anonymous=True)
    admin = await admin_headers(a.store)
    assert (await client.put("/meshes/default", json=mesh("default"), headers=admin)).status == 201
    secret = {"type": "Secret", "name": "s1", "mesh": "default", "data": SECRET_DATA}
    resp = await client.put("/meshes/default/secrets/s1", json=secret, headers=admin)
    assert resp.status == 201
    try:
        yield a
    finally:
        await client.close()
        await a.store.close()


async def user_key(api: Api) -> SigningKey:
    return await ensure_signing_key(api.store, TokenKind.USER)


async def token_for(api: Api, *groups: str, valid: dt.timedelta = HOUR, **kw: Any) -> str:
    return issue(UserClaims("jane", groups), await user_key(api), valid, **kw)


async def refused(
    api: Api, method: str, path: str, status: int, headers: dict[str, str] | None = None, **kw: Any
) -> dict[str, Any]:
    """Calls, expects `status` with Kuma's error body, and checks nothing was stored."""
    before = await api.snapshot()
    resp = await api.client.request(method, path, headers=headers or {}, **kw)
    text = await resp.text()
    assert resp.status == status, text
    body: dict[str, Any] = await resp.json()
    assert_std_error(body, status)
    assert SECRET_DATA not in text
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert await api.snapshot() == before
    return body


async def test_anonymous_writes_are_401_and_store_nothing(anon: Api) -> None:
    body = await refused(
        anon, "PUT", "/meshes/default/meshtrafficpermissions/allow-all", 401, json=MTP_ALLOW_ALL
    )
    assert "needs an admin user token" in body["detail"]
    await refused(anon, "PUT", "/meshes/other", 401, json=mesh("other"))
    await refused(anon, "DELETE", "/meshes/default", 401)
    await refused(anon, "DELETE", "/meshes/default/secrets/s1", 401)
    await refused(anon, "POST", "/tokens/user", 401, json={"name": "x", "validFor": "1h"})
    await refused(anon, "POST", "/tokens/signing-keys/user", 401)


@pytest.mark.parametrize(
    "path",
    [
        "/meshes/default/secrets/s1",
        "/meshes/default/secrets",
        "/secrets",
        "/global-secrets",
        f"/global-secrets/{keyring.ADMIN_USER_TOKEN}",
        "/global-secrets/user-token-signing-key-1",
        "/_watch",
    ],
)
async def test_anonymous_reads_of_secret_data_are_401_without_key_material(
    anon: Api, path: str
) -> None:
    admin_token = (await admin_headers(anon.store))["Authorization"].split()[1]
    resp = await anon.client.get(path)
    text = await resp.text()
    assert resp.status == 401, text
    assert SECRET_DATA not in text and admin_token not in text and "PRIVATE" not in text


async def test_anonymous_reads_of_other_resources_are_public(anon: Api) -> None:
    for path in ("/meshes", "/meshes/default", "/meshtrafficpermissions", "/", "/_resources"):
        assert (await anon.client.get(path)).status == 200, path


async def test_invalid_tokens_are_401_on_every_route(anon: Api) -> None:
    real = await user_key(anon)
    forged_key = SigningKey.generate(real.kid)  # same key id, another key
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    zone_key = await ensure_signing_key(anon.store, TokenKind.ZONE)
    await publish_public_keys(anon.store)
    zone = ZoneClaims("zone-1", (ZoneScope.KDS,))
    cases = {
        "forged": (issue(UserClaims("eve", (ADMIN_GROUP,)), forged_key, HOUR), "signature"),
        "expired": (await token_for(anon, ADMIN_GROUP, now=past), "expired"),
        "zone token": (issue(zone, zone_key, HOUR), "unknown key"),
        "zone claims, user key": (issue(zone, real, HOUR), "not a user token"),
        "garbage": ("garbage", "not a JWT"),
    }
    for name, (token, why) in cases.items():
        for method, path in (("PUT", "/meshes/x"), ("GET", "/meshes"), ("GET", "/secrets")):
            kwargs = {"json": mesh("x")} if method == "PUT" else {}
            body = await refused(anon, method, path, 401, bearer(token), **kwargs)
            assert why in body["detail"], (name, body)


@pytest.mark.parametrize("header", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer   ", "Token x"])
async def test_a_malformed_authorization_header_is_401(anon: Api, header: str) -> None:
    body = await refused(anon, "GET", "/meshes", 401, {"Authorization": header})
    assert "Bearer <user token>" in body["detail"]


async def test_a_revoked_token_is_refused_within_the_cache_time(anon: Api) -> None:
    token = await token_for(anon, ADMIN_GROUP, jti="revoke-me")
    assert (await anon.client.get("/secrets", headers=bearer(token))).status == 200
    revocations = {
        "type": "GlobalSecret",
        "name": "user-token-revocations",
        "data": base64.b64encode(b"other,revoke-me").decode(),
    }
    path = "/global-secrets/user-token-revocations"
    resp = await anon.client.put(path, json=revocations, headers=await admin_headers(anon.store))
    assert resp.status == 201

    async def refused_now() -> bool:
        return (await anon.client.get("/secrets", headers=bearer(token))).status == 401

    await async_wait_until(refused_now, timeout=5, what="the revocation applies")
    body = await refused(anon, "PUT", "/meshes/x", 401, bearer(token), json=mesh("x"))
    assert "revoked" in body["detail"]


async def test_a_user_who_is_not_admin_gets_403_on_writes_and_secrets_200_on_reads(
    anon: Api,
) -> None:
    jane = bearer(await token_for(anon, "team-a"))
    body = await refused(anon, "PUT", "/meshes/x", 403, jane, json=mesh("x"))
    assert "'jane' is not in group 'mesh-system:admin'" in body["detail"]
    await refused(anon, "GET", "/meshes/default/secrets", 403, jane)
    await refused(anon, "GET", "/_watch", 403, jane)
    await refused(anon, "POST", "/tokens/user", 403, jane, json={"name": "x", "validFor": "1h"})
    for path in ("/meshes", "/meshes/default", "/zones"):
        assert (await anon.client.get(path, headers=jane)).status == 200


async def test_an_admin_user_token_may_do_everything(anon: Api) -> None:
    admin = bearer(await token_for(anon, ADMIN_GROUP))
    assert (await anon.client.put("/meshes/x", json=mesh("x"), headers=admin)).status == 201
    resp = await anon.client.get("/meshes/default/secrets/s1", headers=admin)
    assert resp.status == 200 and (await resp.json())["data"] == SECRET_DATA


async def test_localhost_is_admin_only_when_asked() -> None:
    a, client = await start_api(anonymous=True, localhost_is_admin=True)
    try:
        assert (await client.put("/meshes/x", json=mesh("x"))).status == 201
        assert (await client.get("/global-secrets")).status == 200
        # A token that is present is still checked: a bad one is refused, not ignored.
        resp = await client.get("/meshes", headers={"Authorization": "Bearer nope"})
        assert resp.status == 401
    finally:
        await client.close()
        await a.store.close()


async def test_a_zone_without_user_keys_refuses_tokens_saying_why() -> None:
    store = MemoryStore()
    ctx = ApiContext(store, default_registry(), Mode.ZONE, zone="zone-1", ready=True)
    async with TestClient(TestServer(build_app(ctx), host="127.0.0.1")) as client:
        key = SigningKey.generate("user-token-signing-key-1")
        token = issue(UserClaims("admin", (ADMIN_GROUP,)), key, HOUR)
        resp = await client.put("/meshes/default/dataplanes/dp", json={}, headers=bearer(token))
        body = await resp.json()
        assert resp.status == 401 and body["detail"].startswith(NO_KEYS_YET)
        assert (await store.list("Dataplane")).items == []


def test_refusal_detail_names_the_reason() -> None:
    assert refusal_detail("token expired", False) == "invalid user token: token expired"
    assert refusal_detail("unknown key", True) == f"{NO_KEYS_YET} (unknown key)"


async def test_openapi_declares_bearer_security_per_operation(anon: Api) -> None:
    doc = await (await anon.client.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["userToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    ops = doc["paths"]
    assert ops["/meshes"]["get"]["security"] == [{}, {"userToken": []}]
    assert ops["/meshes/{name}"]["put"]["security"] == [{"userToken": []}]
    assert ops["/meshes/{mesh}/secrets"]["get"]["security"] == [{"userToken": []}]
    assert ops["/_watch"]["get"]["x-meshfed-access"] == "admin"
    assert ops["/tokens/user"]["post"]["x-meshfed-access"] == "admin"
    for path, methods in ops.items():
        for method, op in methods.items():
            assert op["x-meshfed-access"] in ("public", "admin"), (path, method)


# ---- fuzz --------------------------------------------------------------------------------

_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _mutations(valid: str) -> st.SearchStrategy[str]:
    """A valid token with a character changed, dropped or added somewhere."""
    alphabet = "ABCxyz019-_.="

    def mutate(pos: int, op: int, ch: str) -> str:
        i = pos % (len(valid) + 1)
        if op == 0:
            return valid[:i] + ch + valid[i + 1 :]
        if op == 1:
            return valid[:i] + valid[i + 1 :]
        return valid[:i] + ch + valid[i:]

    return st.builds(
        mutate, st.integers(0, 10_000), st.integers(0, 2), st.sampled_from(list(alphabet))
    )


def test_fuzzed_authorization_headers_are_refused_never_a_500() -> None:
    loop = asyncio.new_event_loop()
    try:
        api, client = loop.run_until_complete(start_api(anonymous=True))
        key = loop.run_until_complete(user_key(api))
        valid = issue(UserClaims("admin", (ADMIN_GROUP,)), key, HOUR)
        trusted = loop.run_until_complete(_trusted(api))

        async def call(header: str) -> tuple[int, int]:
            headers = {"Authorization": header}
            put = await client.put("/meshes/fuzz", json=mesh("fuzz"), headers=headers)
            get = await client.get("/global-secrets", headers=headers)
            return put.status, get.status

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(
            st.one_of(
                st.text(_PRINTABLE, max_size=300),
                st.text(_PRINTABLE, max_size=300).map(lambda s: "Bearer " + s),
                _mutations(valid).map(lambda s: "Bearer " + s),
            )
        )
        def check(header: str) -> None:
            put, get = loop.run_until_complete(call(header))
            token = header.strip().partition(" ")[2].strip()
            ok = header.strip().lower().startswith("bearer ") and _verifies(token, trusted)
            if ok:
                assert put in (200, 201) and get == 200, (header, put, get)
            else:
                assert (put, get) == (401, 401), (header, put, get)

        check()
        loop.run_until_complete(client.close())
    finally:
        loop.close()


async def _trusted(api: Api) -> Any:
    secrets = (await api.store.list(keyring.GLOBAL_SECRET)).items
    return keyring.trusted_keys(TokenKind.USER, secrets)


def _verifies(token: str, trusted: Any) -> bool:
    try:
        verify(token, TokenKind.USER, trusted)
    except TokenError:
        return False
    return True
