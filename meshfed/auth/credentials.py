"""Token keys and the bootstrap admin token in the store: create once, publish, verify.

The store-facing half of `meshfed.auth` (the rules are in `keyring` and `tokens`). Every create
is a batch that expects the secret absent, so replicas racing (or a restart) never make two
keys of one serial or two admin tokens; the loser reads the winner's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from meshfed.aio import wait_for
from meshfed.auth import keyring
from meshfed.auth.tokens import (
    ADMIN_GROUP,
    KeySet,
    SigningKey,
    TokenError,
    TokenKind,
    UserClaims,
    Verified,
    VerifiedTokens,
    issue,
)
from meshfed.resources.model import Resource
from meshfed.store.base import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore

log = logging.getLogger("meshfed.auth")

ADMIN_USER = "mesh-system:admin"
AUTHENTICATED_GROUP = "mesh-system:authenticated"
ADMIN_TOKEN_VALIDITY = dt.timedelta(days=3650)  # the bootstrap token; personal ones are shorter
CACHE_SECONDS = 1.0  # how stale a verifier's keys may be: a revocation applies within it
STALE_GRACE = 0.25  # how long a re-read may hold a caller who has older keys to fall back on


async def _secrets(store: ResourceStore, kind: TokenKind, mesh: str = "") -> list[Resource]:
    page = await store.list(keyring.secret_type(kind), mesh=mesh or None)
    return page.items


async def ensure_signing_key(store: ResourceStore, kind: TokenKind, mesh: str = "") -> SigningKey:
    """The newest signing key of `kind` (in `mesh` for dataplane keys), created when none
    exists."""
    for _ in range(5):
        secrets = await _secrets(store, kind, mesh)
        key = keyring.newest_signing_key(kind, secrets, mesh)
        if key is not None:
            return key
        key = await _create_key(store, kind, keyring.next_serial(kind, secrets, mesh), mesh)
        if key is not None:
            return key
    raise RuntimeError(f"could not create a {kind}-token signing key (store contention)")


async def add_signing_key(store: ResourceStore, kind: TokenKind, mesh: str = "") -> SigningKey:
    """A new signing key with the next serial: new tokens are signed with it, tokens of the
    older keys stay valid until those keys are deleted (rotation)."""
    for _ in range(5):
        secrets = await _secrets(store, kind, mesh)
        key = await _create_key(store, kind, keyring.next_serial(kind, secrets, mesh), mesh)
        if key is not None:
            return key
    raise RuntimeError(f"could not add a {kind}-token signing key (store contention)")


async def _create_key(
    store: ResourceStore, kind: TokenKind, serial: int, mesh: str
) -> SigningKey | None:
    key = SigningKey.generate(keyring.signing_key_name(kind, serial))
    puts = [keyring.make_secret(kind, key.kid, key.private_pem, mesh)]
    if kind is not TokenKind.DATAPLANE:  # zones verify with the public half
        puts.append(keyring.make_secret(kind, keyring.public_key_name(key.kid), key.public_pem))
    try:
        await store.write_batch(puts, [], expected={p.key: None for p in puts})
    except (AlreadyExistsError, ConflictError):
        return None
    log.info("created %s-token signing key %s%s", kind, key.kid, f" in mesh {mesh}" * bool(mesh))
    return key


async def publish_public_keys(store: ResourceStore) -> int:
    """Makes the public-key GlobalSecrets match the private keys: a retired (deleted) private
    key's public half is deleted, so its tokens stop working in every zone. Returns the number
    of changes."""
    changes = 0
    for kind in (TokenKind.ZONE, TokenKind.USER):
        secrets = await _secrets(store, kind)
        want = {r.meta.name: r for r in keyring.published_public_keys(kind, secrets)}
        have = {
            r.meta.name: r
            for r in secrets
            if keyring.public_serial_of(kind, r.meta.name) is not None
        }
        puts = [
            r for name, r in want.items() if have.get(name) is None or have[name].spec != r.spec
        ]
        deletes = [have[name].key for name in have if name not in want]
        if puts or deletes:
            await store.write_batch(puts, deletes)
            changes += len(puts) + len(deletes)
    return changes


async def ensure_admin_token(store: ResourceStore) -> str:
    """The bootstrap admin user token (GlobalSecret `admin-user-token`), issued on the first
    start; later starts read it."""
    for _ in range(5):
        try:
            res = await store.get(keyring.GLOBAL_SECRET, "", keyring.ADMIN_USER_TOKEN)
        except NotFoundError:
            pass
        else:
            raw = keyring.secret_bytes(res)
            if raw:
                return raw.decode("ascii", "replace").strip()
            raise RuntimeError(f"GlobalSecret {keyring.ADMIN_USER_TOKEN} holds no token")
        key = await ensure_signing_key(store, TokenKind.USER)
        claims = UserClaims(ADMIN_USER, (ADMIN_GROUP, AUTHENTICATED_GROUP))
        token = issue(claims, key, ADMIN_TOKEN_VALIDITY)
        secret = keyring.make_secret(TokenKind.USER, keyring.ADMIN_USER_TOKEN, token.encode())
        try:
            await store.write_batch([secret], [], expected={secret.key: None})
        except (AlreadyExistsError, ConflictError):
            continue  # another replica was first: read its token
        log.info("issued the bootstrap admin user token (GlobalSecret %s)", secret.meta.name)
        return token
    raise RuntimeError("could not create the admin token (store contention)")


class Verifier:
    """Checks tokens of one kind against the keys in the store, re-read once they are older
    than `CACHE_SECONDS` (so a new key, a retired key or a revocation applies within that).

    A re-read that the store does not answer within `stale_grace` (an etcd leader election,
    a store outage) does not hold the caller: the keys read last keep verifying meanwhile and
    the re-read finishes in the background. Only a verifier that never read its keys fails
    when the store does; authentication never makes a store outage worse than it is.
    """

    def __init__(
        self,
        store: ResourceStore,
        kind: TokenKind,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
        stale_grace: float = STALE_GRACE,
    ) -> None:
        self._store = store
        self.kind = kind
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._stale_grace = stale_grace
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._reading: dict[str, asyncio.Future[KeySet]] = {}
        self.verified = VerifiedTokens(kind)

    async def trusted(self, mesh: str = "") -> KeySet:
        hit = self._cache.get(mesh)
        if hit is not None and self._clock() - hit[0] < self._cache_seconds:
            return hit[1]
        reading = self._reading.get(mesh)
        if reading is None or reading.done():
            reading = self._reading[mesh] = asyncio.ensure_future(self._read(mesh))
            reading.add_done_callback(_retrieve)
        if hit is None:
            return await asyncio.shield(reading)
        try:
            return await wait_for(asyncio.shield(reading), self._stale_grace)
        except Exception as exc:  # slow or failing store: the last keys read still hold
            log.debug("%s-token keys not re-read (%s); using the last ones", self.kind, exc)
            return hit[1]

    async def _read(self, mesh: str) -> KeySet:
        secrets = await _secrets(self._store, self.kind, mesh)
        keys = keyring.trusted_keys(self.kind, secrets, mesh)
        self._cache[mesh] = (self._clock(), keys)
        return keys

    async def verify(self, token: str | bytes | None, mesh: str = "") -> Verified:
        """Raises TokenError (a store failure with no keys read yet is one too)."""
        try:
            trusted = await self.trusted(mesh)
        except Exception as exc:  # the store is down: refuse, never crash the caller
            raise TokenError(f"cannot read the {self.kind}-token keys: {exc}") from exc
        return self.verified.verify(token, trusted, scope=mesh)


def _retrieve(done: asyncio.Future[KeySet]) -> None:
    """A background re-read that failed was already answered by the stale keys."""
    if not done.cancelled():
        done.exception()
