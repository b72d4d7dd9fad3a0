"""MeshFaultInjection and MeshRateLimit of one inbound, as the sidecar config carries them
(issue 14, decision 128); compiled by meshfed/dpconfig/traffic_rules.py.

The control plane merges; the sidecar only looks up, per request or connection, with the
caller's verified SPIFFE ID, as for MeshTrafficPermission (meshfed/policy/permissions.py):

- Faults: a `default` holds one field, the `http` list, which a merge replaces whole (Kuma's
  list rule), so the merged list for a caller is the one of the last entry, in merge order,
  that sets it and selects the caller. `from[]` is merged per caller service as
  MeshTrafficPermission's (`services`, else `default` for any caller), or kept in merge
  order when an entry names callers by tags (`tagged`, decision 153); `rules[]` come after
  `from[]` (they override it), each kept with its SPIFFE ID `matches` (none: every caller),
  and the last one selecting the caller wins (`InboundFaults.for_caller`).
- Rate limit: `from[]` selects callers by Mesh only and a `rules[]` entry with `matches`
  is refused by the gate (meshfed/policy/enforced.py), so one merged conf holds for every
  caller of the inbound: `from[]` then `rules[]`, as JSON (meshfed/policy/merge.py), read
  through the model. `disabled: true` (or no rate) leaves that half off.

These are parts of the sidecar config (meshfed/dpconfig/model.py `Inbound`): typed msgspec
messages, their JSON form camelCase, importing nothing the proxies may not (no pydantic).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from meshfed.pki.spiffe import PkiError, parse_spiffe_id
from meshfed.pki.tag_sans import NO_TAGS, TagSet
from meshfed.policy.callers import selects
from meshfed.policy.permissions import SpiffeMatch

DEFAULT_RATE_LIMIT_STATUS = 429  # Kuma's (and Envoy's local rate limit's) default

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Status = Annotated[int, msgspec.Meta(ge=100, le=599)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]
BitRate = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=float(2**32))]


class _Message(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    pass


class Abort(_Message, frozen=True):
    status: Status
    percentage: Percent


class Delay(_Message, frozen=True):
    seconds: Seconds
    percentage: Percent


class Bandwidth(_Message, frozen=True):
    """`responseBandwidth`: the response body at most `bits_per_second` (`10kbps`: 10,000)."""

    bits_per_second: BitRate
    percentage: Percent


class HttpFault(_Message, frozen=True):
    """One item of a MeshFaultInjection `http` list: Envoy's fault filter, delay then abort,
    then the response's bandwidth."""

    abort: Abort | None = None
    delay: Delay | None = None
    response_bandwidth: Bandwidth | None = None


Faults = tuple[HttpFault, ...]


class FaultRule(_Message, frozen=True):
    """A `rules[]` entry's faults and the callers it selects (no matches: every caller)."""

    faults: Faults
    matches: tuple[SpiffeMatch, ...] = ()

    def selects(self, caller: str | None) -> bool:
        if not self.matches:
            return True
        return caller is not None and any(m.matches(caller) for m in self.matches)


class TaggedFaults(_Message, frozen=True):
    """A `from[]` entry setting `http`, of an inbound whose callers are named by tags: the
    tags it requires (with `kuma.io/service` for a service) and its faults."""

    tags: dict[str, str]
    faults: Faults


class InboundFaults(_Message, frozen=True):
    """MeshFaultInjection of one inbound; `sources` empty: none applies."""

    mesh: str = ""
    default: Faults | None = None  # from[] for any caller (None: no entry sets it)
    services: dict[str, Faults] = msgspec.field(default_factory=dict)  # from[] per caller
    rules: tuple[FaultRule, ...] = ()  # in merge order: the last selecting the caller wins
    sources: tuple[str, ...] = ()
    # from[] in merge order when an entry names callers by tags (then default and services
    # are unset): the last selecting the caller wins (meshfed/policy/callers.py)
    tagged: tuple[TaggedFaults, ...] = ()

    def for_caller(self, caller: str | None, tags: TagSet = NO_TAGS) -> Faults:
        """The faults for a caller with this verified SPIFFE ID (None: no identity), whose
        certificate vouches for `tags`."""
        for rule in reversed(self.rules):
            if rule.selects(caller):
                return rule.faults
        service = _service(caller, self.mesh) if self.tagged or self.services else None
        if self.tagged:
            for t in reversed(self.tagged):
                if selects(t.tags, service, tags):  # `Mesh` selects even no identity
                    return t.faults
            return ()
        if service is not None:
            found = self.services.get(service)
            if found is not None:
                return found
        return self.default or ()


def _service(caller: str | None, mesh: str) -> str | None:
    """The service of a caller of `mesh`; None for no identity or another mesh's."""
    if caller is None:
        return None
    try:
        ident = parse_spiffe_id(caller)
    except PkiError:
        return None
    return ident.service if ident.mesh == mesh else None


class Rate(_Message, frozen=True):
    """`num` per `interval` seconds: Envoy's token bucket, `num` tokens refilled each interval."""

    num: Positive
    interval: Seconds


class InboundRateLimit(_Message, frozen=True):
    """MeshRateLimit of one inbound; None rates: that half is off."""

    http: Rate | None = None
    status: Status = DEFAULT_RATE_LIMIT_STATUS
    set_headers: tuple[tuple[str, str], ...] = ()
    add_headers: tuple[tuple[str, str], ...] = ()
    tcp: Rate | None = None
    sources: tuple[str, ...] = ()
