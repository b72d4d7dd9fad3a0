"""Signed tokens (JWT, ES256): zone tokens, dataplane tokens and user tokens.

Pure code: no store, no sockets. Issuing takes a signing key; verifying takes the public keys
by key id (the JWT `kid` header names the one key to check, so several keys can be valid at
once and rotation is "add a key, re-issue, retire the old one"), the revoked token ids and the
time. The three kinds are told apart by the audience (`aud`), so a token of one kind is never
accepted as another. Claims follow Kuma's (pkg/core/tokens): zone tokens carry `zone` and
`scope`, dataplane tokens `mesh`, `tags` (tag -> allowed values) and optionally `name`, user
tokens `name` and `groups`; each has `jti`, `iat` and a required `exp`.

Every failure is a `TokenError` whose message says what is wrong without echoing the token.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshfed.pki.ca import key_pem

ISSUER = "meshfed"
ALGORITHM = "ES256"
MAX_TOKEN_BYTES = 4096  # a real token is ~400-900 bytes; below gRPC's 8 KiB metadata soft limit
MAX_VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(minutes=1)  # a token from a host whose clock runs a little ahead
ADMIN_GROUP = "mesh-system:admin"  # Kuma's group of administrators
_KID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_JTI = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class TokenKind(enum.StrEnum):
    ZONE = "zone"
    DATAPLANE = "dataplane"
    USER = "user"


class ZoneScope(enum.StrEnum):
    KDS = "kds"  # a zone control plane's KDS streams and health check
    INGRESS = "ingress"  # a zone ingress proxy
    EGRESS = "egress"  # a zone egress proxy


class TokenError(Exception):
    """The token was refused; the message says why (never the token itself)."""


@dataclass(frozen=True)
class SigningKey:
    """One signing key: its id and its private key (the public half is derived)."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @staticmethod
    def generate(kid: str) -> SigningKey:
        if not _KID.match(kid):
            raise ValueError(f"invalid key id {kid!r}")
        return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()))

    @staticmethod
    def from_pem(kid: str, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"signing key {kid!r} is not an ECDSA P-256 key")
        return SigningKey(kid, key)

    @property
    def private_pem(self) -> bytes:
        return key_pem(self.private_key)

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key


@dataclass(frozen=True)
class ZoneClaims:
    zone: str
    scope: tuple[ZoneScope, ...]


@dataclass(frozen=True)
class DataplaneClaims:
    mesh: str
    tags: Mapping[str, tuple[str, ...]]  # tag -> allowed values; `kuma.io/service` required
    name: str = ""  # "" = any dataplane name

    def allows_service(self, service: str) -> bool:
        return service in self.tags.get("kuma.io/service", ())


@dataclass(frozen=True)
class UserClaims:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


Claims = ZoneClaims | DataplaneClaims | UserClaims


@dataclass(frozen=True)
class Verified:
    """A token that passed every check."""

    kind: TokenKind
    claims: Claims
    jti: str
    kid: str
    expires: dt.datetime


@dataclass(frozen=True)
class KeySet:
    """What a verifier trusts: public keys by key id, and the revoked token ids."""

    keys: Mapping[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()


def _kind_of(claims: Claims) -> TokenKind:
    if isinstance(claims, ZoneClaims):
        return TokenKind.ZONE
    if isinstance(claims, DataplaneClaims):
        return TokenKind.DATAPLANE
    return TokenKind.USER


def issue(
    claims: Claims,
    key: SigningKey,
    valid_for: dt.timedelta,
    *,
    now: dt.datetime | None = None,
    jti: str | None = None,
) -> str:
    """A signed token for `claims`, valid from now for `valid_for`."""
    if valid_for <= dt.timedelta(0) or valid_for > MAX_VALIDITY:
        raise ValueError(f"validity must be positive and at most {MAX_VALIDITY.days} days")
    now = now or dt.datetime.now(dt.UTC)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": str(_kind_of(claims)),
        "jti": jti or uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "exp": int((now + valid_for).timestamp()),
    }
    if isinstance(claims, ZoneClaims):
        if not claims.zone:
            raise ValueError("a zone token names its zone")
        if not claims.scope:
            raise ValueError("a zone token has at least one scope")
        payload |= {"zone": claims.zone, "scope": sorted(str(s) for s in set(claims.scope))}
    elif isinstance(claims, DataplaneClaims):
        if not claims.mesh or not claims.tags.get("kuma.io/service"):
            raise ValueError("a dataplane token names its mesh and kuma.io/service")
        payload |= {"mesh": claims.mesh, "tags": {k: list(v) for k, v in claims.tags.items()}}
        if claims.name:
            payload["name"] = claims.name
    else:
        if not claims.name:
            raise ValueError("a user token names its user")
        payload |= {"name": claims.name, "groups": list(claims.groups)}
    token: str = jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
    return token


def verify(
    token: str | bytes | None,
    kind: TokenKind,
    trusted: KeySet,
    *,
    now: dt.datetime | None = None,
) -> Verified:
    """The token's claims if it is a valid, unexpired, unrevoked `kind` token signed by one of
    `trusted.keys`; otherwise TokenError saying why."""
    if token is None or token in ("", b""):
        raise TokenError("no token")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenError("malformed token: not ASCII") from None
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(f"malformed token: longer than {MAX_TOKEN_BYTES} bytes")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed token: not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"malformed token: algorithm must be {ALGORITHM}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid):
        raise TokenError("malformed token: no valid key id")
    public = trusted.keys.get(kid)
    if public is None:
        raise TokenError(f"token signed by an unknown key {kid!r} (retired, or not ours)")
    now = now or dt.datetime.now(dt.UTC)
    try:
        payload = jwt.decode(
            token,
            public,
            algorithms=[ALGORITHM],
            audience=str(kind),
            issuer=ISSUER,
            # Times are checked below against `now` (testable, and one clock for all checks).
            options={
                "require": ["exp", "iat", "jti", "aud", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise TokenError(f"not a {kind} token") from None
    except jwt.InvalidSignatureError:
        raise TokenError("invalid signature") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"malformed token: {_short(exc)}") from None
    expires = _time(payload, "exp")
    if expires <= now:
        raise TokenError(f"token expired at {expires.isoformat()}")
    if _time(payload, "iat") > now + CLOCK_SKEW:
        raise TokenError("token issued in the future (clocks apart?)")
    jti = payload["jti"]
    if not isinstance(jti, str) or not _JTI.match(jti):
        raise TokenError("malformed token: invalid jti")
    if jti in trusted.revoked:
        raise TokenError(f"token {jti} is revoked")
    claims = _claims(kind, payload)
    return Verified(kind, claims, jti, kid, expires)


VERIFIED_CACHE_SIZE = 4096  # tokens a verifier remembers as verified (a few MB at most)


class VerifiedTokens:
    """A bounded cache of the `kind` tokens that passed `verify`, so a client repeating its
    token (every API request, every proxy reconnect) costs a dict lookup instead of an ES256
    verification (26 % of a busy zone's CPU, issue 19; decision 123).

    An entry answers only while the trusted KeySet is the one it was verified against (equal:
    a key rotated away or a token revoked since makes it unequal, and the token is verified
    again, so refused at once) and until the token's exp; the oldest entry goes when full.
    Refusals are never cached. Pure: the caller passes the keys and the time."""

    def __init__(self, kind: TokenKind, size: int = VERIFIED_CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError("the cache holds at least one token")
        self.kind = kind
        self._size = size
        self._entries: dict[tuple[str, str | bytes], tuple[KeySet, Verified]] = {}
        self.hits = 0

    def verify(
        self,
        token: str | bytes | None,
        trusted: KeySet,
        *,
        scope: str = "",
        now: dt.datetime | None = None,
    ) -> Verified:
        """`verify(token, kind, trusted)`, answered from the cache when it may be; `scope`
        separates what different key sets verified (a dataplane token's mesh)."""
        now = now or dt.datetime.now(dt.UTC)
        if token is None:
            return verify(token, self.kind, trusted, now=now)
        key = (scope, token)
        entry = self._entries.pop(key, None)
        if entry is not None:
            keys, verified = entry
            if verified.expires > now and (keys is trusted or keys == trusted):
                self._entries[key] = (trusted, verified)  # newest again; identity next time
                self.hits += 1
                return verified
        verified = verify(token, self.kind, trusted, now=now)
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (trusted, verified)
        return verified

    def __len__(self) -> int:
        return len(self._entries)


def _time(payload: Mapping[str, Any], name: str) -> dt.datetime:
    value = payload[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(f"malformed token: {name} is not a whole number")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenError(f"malformed token: {name} is out of range") from None


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _str(payload: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = payload.get(name, "" if not required else None)
    if not isinstance(value, str) or (required and not value) or len(value) > 253:
        raise TokenError(f"malformed token: claim {name!r} must be a non-empty string")
    return value


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 64:
        raise TokenError(f"malformed token: {what} must be a list of strings")
    if not all(isinstance(v, str) and 0 < len(v) <= 253 for v in value):
        raise TokenError(f"malformed token: {what} must be a list of strings")
    return tuple(value)


def _claims(kind: TokenKind, payload: Mapping[str, Any]) -> Claims:
    if kind is TokenKind.ZONE:
        scopes = _str_list(payload.get("scope"), "scope")
        try:
            scope = tuple(ZoneScope(s) for s in scopes)
        except ValueError:
            raise TokenError(f"malformed token: unknown scope in {list(scopes)}") from None
        if not scope:
            raise TokenError("malformed token: no scope")
        return ZoneClaims(_str(payload, "zone"), scope)
    if kind is TokenKind.DATAPLANE:
        raw = payload.get("tags")
        if not isinstance(raw, dict) or len(raw) > 64:
            raise TokenError("malformed token: tags must be an object")
        tags = {str(k): _str_list(v, f"tags[{k!r}]") for k, v in raw.items()}
        if not tags.get("kuma.io/service"):
            raise TokenError("malformed token: no kuma.io/service tag")
        name = payload.get("name", "")
        if not isinstance(name, str):
            raise TokenError("malformed token: name must be a string")
        return DataplaneClaims(_str(payload, "mesh"), tags, name)
    groups = _str_list(payload.get("groups", []), "groups")
    return UserClaims(_str(payload, "name"), groups)


def key_set(
    public_pems: Mapping[str, bytes], revoked: Collection[str] = (), *, skip_bad: bool = True
) -> KeySet:
    """A KeySet from PEM public keys by kid; a key that does not load is left out (one bad
    secret never stops the others) unless `skip_bad` is False."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for kid, pem in public_pems.items():
        try:
            keys[kid] = load_public_key(pem)
        except ValueError:
            if not skip_bad:
                raise
    return KeySet(keys, frozenset(revoked))


def parse_revocations(text: str) -> frozenset[str]:
    """Kuma keeps revoked token ids as one comma-separated secret value."""
    return frozenset(t.strip() for t in text.replace("\n", ",").split(",") if t.strip())


def zone_scopes(values: Sequence[str]) -> tuple[ZoneScope, ...]:
    """Scopes from their names (`kds`, `ingress`, `egress`); ValueError names a bad one."""
    out: list[ZoneScope] = []
    for value in values:
        try:
            out.append(ZoneScope(value.strip()))
        except ValueError:
            known = ", ".join(s.value for s in ZoneScope)
            raise ValueError(f"unknown scope {value!r} (known: {known})") from None
    return tuple(out)
