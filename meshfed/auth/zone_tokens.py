"""Issuing zone tokens: the request (`POST /tokens/zone`, `meshctl generate zone-token`) and
the signing.

A zone token names one zone and its scopes (`kds`: the zone control plane's KDS streams;
`ingress`/`egress`: that zone's proxies). The default scope is every component meshfed has
(`kds`, `ingress` and `egress`), as Kuma's `kumactl generate zone-token`
defaults to all of its scopes (https://kuma.io/docs/latest/security/zone-authentication/):
one token per zone covers its control plane and its zone proxies. An operator who wants to give
the ingress a token that cannot talk KDS asks for `--scope ingress`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import MAX_VALIDITY, TokenKind, ZoneClaims, ZoneScope, issue
from meshfed.resources.codec import check_name
from meshfed.resources.errors import FieldError
from meshfed.resources.values import parse_duration
from meshfed.store.base import ResourceStore

DEFAULT_SCOPE: tuple[ZoneScope, ...] = (ZoneScope.KDS, ZoneScope.INGRESS, ZoneScope.EGRESS)
DEFAULT_VALIDITY = "720h"  # 30 days: rotate by issuing a new one and revoking the old
_FIELDS = frozenset({"zone", "scope", "validFor"})


@dataclass(frozen=True)
class ZoneTokenRequest:
    zone: str
    scope: tuple[ZoneScope, ...]
    valid_for: dt.timedelta


def parse_request(body: Any) -> ZoneTokenRequest | list[FieldError]:
    """The request `{"zone", "scope": [...], "validFor": "720h"}`, or every problem by field.
    Pure."""
    if not isinstance(body, Mapping):
        return [FieldError("", 'must be an object such as {"zone": "zone-1"}')]
    errors = [FieldError(str(k), "unknown field") for k in body if k not in _FIELDS]
    zone = body.get("zone")
    if not isinstance(zone, str) or not zone:
        errors.append(FieldError("zone", "required: the name of the zone"))
    else:
        errors += [FieldError("zone", p.reason) for p in check_name(zone, "zone")]
        if len(zone) > 63:
            errors.append(FieldError("zone", "must be at most 63 characters"))
    scope = DEFAULT_SCOPE
    raw_scope = body.get("scope")
    if raw_scope is not None:
        known = ", ".join(s.value for s in ZoneScope)
        if not isinstance(raw_scope, list) or not raw_scope:
            errors.append(FieldError("scope", f"must be a non-empty list of: {known}"))
        else:
            picked: list[ZoneScope] = []
            for i, value in enumerate(raw_scope):
                try:
                    picked.append(ZoneScope(value))
                except ValueError:
                    errors.append(FieldError(f"scope[{i}]", f"unknown scope; known: {known}"))
            scope = tuple(dict.fromkeys(picked))
    raw_valid = body.get("validFor", DEFAULT_VALIDITY)
    valid_for = dt.timedelta(0)
    ns = parse_duration(raw_valid, long_units=True) if isinstance(raw_valid, str) else None
    if ns is None or ns <= 0:
        errors.append(FieldError("validFor", 'must be a positive duration such as "720h"'))
    else:
        valid_for = dt.timedelta(microseconds=ns // 1000)
        if valid_for > MAX_VALIDITY:
            errors.append(FieldError("validFor", f"must be at most {MAX_VALIDITY.days} days"))
        elif valid_for < dt.timedelta(seconds=1):
            errors.append(FieldError("validFor", "must be at least 1s"))
    if errors:
        return errors
    assert isinstance(zone, str)
    return ZoneTokenRequest(zone, scope, valid_for)


async def issue_zone_token(store: ResourceStore, request: ZoneTokenRequest) -> str:
    """A token signed with the newest zone-token signing key (made if none exists)."""
    key = await ensure_signing_key(store, TokenKind.ZONE)
    return issue(ZoneClaims(request.zone, request.scope), key, request.valid_for)
