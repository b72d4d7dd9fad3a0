"""Signing keys, the admin token and the verifier over a real (memory) store."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import pytest

from meshfed.auth import keyring
from meshfed.auth.credentials import (
    Verifier,
    add_signing_key,
    ensure_admin_token,
    ensure_signing_key,
    publish_public_keys,
)
from meshfed.auth.tokens import (
    DataplaneClaims,
    TokenError,
    TokenKind,
    UserClaims,
    ZoneClaims,
    ZoneScope,
    issue,
)
from meshfed.resources.types.secret import GLOBAL_SECRET, is_public_global_secret
from meshfed.store.memory import MemoryStore

HOUR = dt.timedelta(hours=1)


async def _names(store: MemoryStore, type_: str = "GlobalSecret") -> list[str]:
    return [r.meta.name for r in (await store.list(type_)).items]


async def test_keys_are_created_once_even_when_racing() -> None:
    store = MemoryStore()
    keys = await asyncio.gather(*(ensure_signing_key(store, TokenKind.ZONE) for _ in range(5)))
    assert {k.kid for k in keys} == {"zone-token-signing-key-1"}
    assert {k.public_pem for k in keys} == {keys[0].public_pem}
    assert await _names(store) == ["zone-token-signing-key-1", "zone-token-signing-public-key-1"]


async def test_rotation_add_then_retire() -> None:
    store = MemoryStore()
    old = await ensure_signing_key(store, TokenKind.ZONE)
    new = await add_signing_key(store, TokenKind.ZONE)
    assert new.kid == "zone-token-signing-key-2"
    assert (await ensure_signing_key(store, TokenKind.ZONE)).kid == new.kid  # newest signs
    verifier = Verifier(store, TokenKind.ZONE, cache_seconds=0)
    claims = ZoneClaims("zone-1", (ZoneScope.KDS,))
    old_token, new_token = issue(claims, old, HOUR), issue(claims, new, HOUR)
    assert (await verifier.verify(old_token)).kid == old.kid
    # Retire the old key: delete its private half; publishing removes the public half.
    await store.delete("GlobalSecret", "", old.kid)
    assert await publish_public_keys(store) == 1
    assert "zone-token-signing-public-key-1" not in await _names(store)
    with pytest.raises(TokenError, match="unknown key"):
        await verifier.verify(old_token)
    assert (await verifier.verify(new_token)).kid == new.kid
    assert await publish_public_keys(store) == 0


async def test_publish_restores_a_deleted_public_key() -> None:
    store = MemoryStore()
    await ensure_signing_key(store, TokenKind.USER)
    await store.delete("GlobalSecret", "", "user-token-signing-public-key-1")
    assert await publish_public_keys(store) == 1
    assert "user-token-signing-public-key-1" in await _names(store)


async def test_revocation_applies() -> None:
    store = MemoryStore()
    key = await ensure_signing_key(store, TokenKind.ZONE)
    token = issue(ZoneClaims("zone-1", (ZoneScope.KDS,)), key, HOUR, jti="t1")
    verifier = Verifier(store, TokenKind.ZONE, cache_seconds=0)
    await verifier.verify(token)
    await store.create(keyring.make_secret(TokenKind.ZONE, "zone-token-revocations", b"x,t1"))
    with pytest.raises(TokenError, match="revoked"):
        await verifier.verify(token)


async def test_the_verifier_caches_for_its_period() -> None:
    store = MemoryStore()
    key = await ensure_signing_key(store, TokenKind.ZONE)
    token = issue(ZoneClaims("zone-1", (ZoneScope.KDS,)), key, HOUR, jti="t1")
    now = [0.0]
    verifier = Verifier(store, TokenKind.ZONE, clock=lambda: now[0], cache_seconds=1.0)
    await verifier.verify(token)
    await store.create(keyring.make_secret(TokenKind.ZONE, "zone-token-revocations", b"t1"))
    await verifier.verify(token)  # cached: revocation not seen yet
    now[0] = 1.5
    with pytest.raises(TokenError, match="revoked"):
        await verifier.verify(token)


async def test_dataplane_keys_are_per_mesh() -> None:
    store = MemoryStore()
    key = await ensure_signing_key(store, TokenKind.DATAPLANE, "default")
    assert await _names(store, "Secret") == ["dataplane-token-signing-key-1"]
    claims = DataplaneClaims("default", {"kuma.io/service": ("web",)})
    token = issue(claims, key, HOUR)
    verifier = Verifier(store, TokenKind.DATAPLANE, cache_seconds=0)
    assert (await verifier.verify(token, "default")).claims == claims
    with pytest.raises(TokenError, match="unknown key"):
        await verifier.verify(token, "other")


async def test_admin_token_is_issued_once() -> None:
    store = MemoryStore()
    tokens = await asyncio.gather(*(ensure_admin_token(store) for _ in range(3)))
    assert len(set(tokens)) == 1
    got = await Verifier(store, TokenKind.USER).verify(tokens[0])
    assert isinstance(got.claims, UserClaims) and got.claims.is_admin
    assert await ensure_admin_token(store) == tokens[0]


async def test_a_store_failure_is_a_refusal() -> None:
    store = MemoryStore()
    await store.close()

    class Broken(MemoryStore):
        async def list(self, *a: object, **kw: object):  # type: ignore[no-untyped-def,override]
            raise OSError("disk gone")

    with pytest.raises(TokenError, match="cannot read the zone-token keys: disk gone"):
        await Verifier(Broken(), TokenKind.ZONE).verify("x")


def test_only_public_global_secrets_reach_zones() -> None:
    def res(name: str) -> object:
        return keyring.make_secret(TokenKind.ZONE, name, b"x")

    public = ["zone-token-signing-public-key-3", "user-token-revocations", "zone-token-revocations"]
    private = ["zone-token-signing-key-3", "admin-user-token", "user-token-signing-key-1", "x"]
    assert all(is_public_global_secret(res(n)) for n in public)  # type: ignore[arg-type]
    assert not any(is_public_global_secret(res(n)) for n in private)  # type: ignore[arg-type]
    assert GLOBAL_SECRET.sync_to_zones is is_public_global_secret


def test_a_bad_key_secret_is_skipped_not_fatal() -> None:
    bad = keyring.make_secret(TokenKind.ZONE, "zone-token-signing-key-1", b"garbage")
    also_bad = keyring.make_secret(TokenKind.ZONE, "zone-token-signing-public-key-2", b"junk")
    nonb64 = keyring.make_secret(TokenKind.ZONE, "zone-token-signing-public-key-3", b"")
    nonb64.spec["data"] = "%%%"
    assert keyring.signing_keys(TokenKind.ZONE, [bad]) == []
    assert keyring.trusted_keys(TokenKind.ZONE, [also_bad, nonb64]).keys == {}
    assert base64.b64decode(bad.spec["data"]) == b"garbage"


class SlowStore(MemoryStore):
    """A store whose lists can be made to hang or fail (an etcd election, an outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def list(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.fail is not None:
            raise self.fail
        if self.gate is not None:
            await self.gate.wait()
        return await super().list(*args, **kwargs)


async def test_a_slow_or_failing_store_does_not_hold_callers_who_have_keys() -> None:
    store = SlowStore()
    key = await ensure_signing_key(store, TokenKind.ZONE)
    token = issue(ZoneClaims("zone-1", (ZoneScope.KDS,)), key, HOUR)
    now = [0.0]
    verifier = Verifier(
        store, TokenKind.ZONE, clock=lambda: now[0], cache_seconds=1.0, stale_grace=0.05
    )
    await verifier.verify(token)
    now[0] = 5.0
    store.gate = asyncio.Event()  # the store hangs: the old keys answer within the grace
    assert (await asyncio.wait_for(verifier.verify(token), 2)).kid == key.kid
    store.gate.set()  # it answers again: the background read refreshes the cache
    await asyncio.sleep(0)
    store.gate = None
    store.fail = OSError("etcd: no leader")
    now[0] = 10.0
    assert (await verifier.verify(token)).kid == key.kid  # failing: still the old keys


async def test_no_keys_ever_read_and_the_store_fails_is_a_refusal() -> None:
    store = SlowStore()
    store.fail = OSError("etcd: no leader")
    with pytest.raises(TokenError, match="cannot read the zone-token keys: etcd: no leader"):
        await Verifier(store, TokenKind.ZONE).verify("x")
