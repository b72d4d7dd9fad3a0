"""MeshTrafficPermission compiled for one inbound, and its per-connection evaluation.

The control plane compiles; the sidecar only evaluates, per accepted connection, from the
caller's verified SPIFFE ID (`spiffe://<mesh>/<service>`), with a dict lookup and at most a
few string comparisons: no policy is parsed on the data path.

Evaluation, first answer wins:

1. mTLS off on the mesh: allow (Kuma: MeshTrafficPermission needs mTLS; there is no
   identity to check).
2. no client certificate: deny.
3. `rules[]` (SPIFFE ID matchers of every matched policy, concatenated): a `deny` match
   denies; else an `allowWithShadowDeny` match allows and is logged as a would-be deny; else
   an `allow` match allows. So a deny in the rules form cannot be overridden by any allow.
4. `from[]`: the entries whose targetRef selects the caller, merged in Kuma's order (see
   rules.py: the narrower caller selection wins, then the more specific policy): the
   caller's service if some entry names it, else the entries that select every caller
   (`Mesh`, `MeshSubset` without tags). `AllowWithShadowDeny` allows and logs.
5. nothing matched: deny (Kuma's default when mTLS is on).

A caller is known by its certificate only: its service (the SPIFFE ID) and the tags its
control plane vouched for (`kuma://` URI SANs). When a `from[]` entry requires other tags
(`MeshSubset{env: dev}`, `MeshServiceSubset{name: web, tags: {version: v1}}`), step 4 folds
the inbound's entries in merge order instead (`tagged`, meshfed/policy/callers.py); a
certificate without tag SANs matches no such entry.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from meshfed.pki.spiffe import PkiError, parse_spiffe_id
from meshfed.pki.tag_sans import NO_TAGS, TagSet
from meshfed.policy.callers import caller_entries, selects
from meshfed.resources.fields import SERVICE_TAG, as_list

if TYPE_CHECKING:
    from meshfed.policy.rules import Entry, Matched


class Action(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"
    ALLOW_WITH_SHADOW_DENY = "AllowWithShadowDeny"


class MatchType(enum.StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"


class SpiffeMatch(msgspec.Struct, frozen=True):
    """Part of the sidecar config (meshfed.dpconfig.model): a typed message, not a dataclass."""

    type: MatchType
    value: str

    def matches(self, spiffe_id: str) -> bool:
        if self.type is MatchType.EXACT:
            return spiffe_id == self.value
        return spiffe_id.startswith(self.value)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str  # for logs: which rule decided

    @property
    def allowed(self) -> bool:
        return self.action is not Action.DENY

    @property
    def shadow_denied(self) -> bool:
        """Allowed, but a rule says it would be denied: log it."""
        return self.action is Action.ALLOW_WITH_SHADOW_DENY


class TaggedAction(msgspec.Struct, frozen=True):
    """One `from[]` entry of an inbound whose callers are named by tags: the tags it requires
    (with `kuma.io/service` for a service) and its action."""

    tags: dict[str, str]
    action: Action


class Permissions(msgspec.Struct, frozen=True, rename="camel"):
    """What an inbound lets in. `enforced` is False when the mesh has no mTLS. Part of the
    sidecar config (meshfed.dpconfig.model): its JSON form is this definition's."""

    mesh: str
    enforced: bool = True
    # from[]: the action for a caller whose service no entry names (None: no entry).
    default: Action | None = None
    # from[]: the action for each caller service that some entry names.
    services: dict[str, Action] = msgspec.field(default_factory=dict)
    # rules[]: SPIFFE ID matchers.
    deny: tuple[SpiffeMatch, ...] = ()
    allow: tuple[SpiffeMatch, ...] = ()
    allow_with_shadow_deny: tuple[SpiffeMatch, ...] = ()
    # The policies that contributed (`MeshTrafficPermission/<name>`), for inspection.
    sources: tuple[str, ...] = ()
    # from[] in merge order, when an entry names callers by tags (then default and services
    # are unset): the last entry selecting the caller decides.
    tagged: tuple[TaggedAction, ...] = ()

    def evaluate(self, caller: str | None, tags: TagSet = NO_TAGS) -> Verdict:
        """The verdict for a connection whose verified client identity is `caller` (None:
        no certificate), whose certificate vouches for `tags`."""
        if not self.enforced:
            return Verdict(Action.ALLOW, "mTLS is off: traffic permissions are not enforced")
        if caller is None:
            return Verdict(Action.DENY, "no client certificate")
        for matchers, verdict, what in (
            (self.deny, Action.DENY, "deny"),
            (self.allow_with_shadow_deny, Action.ALLOW_WITH_SHADOW_DENY, "allowWithShadowDeny"),
            (self.allow, Action.ALLOW, "allow"),
        ):
            for m in matchers:
                if m.matches(caller):
                    return Verdict(verdict, f"rules {what} matches {m.type} {m.value}")
        service = self._service(caller)
        if self.tagged:
            for t in reversed(self.tagged):
                if service is not None and selects(t.tags, service, tags):
                    return Verdict(t.action, f"from[] for callers {t.tags}: {t.action}")
            return Verdict(Action.DENY, f"no MeshTrafficPermission allows {caller}")
        if service is not None:
            action = self.services.get(service)
            if action is not None:
                return Verdict(action, f"from[] for service {service!r}: {action}")
            if self.default is not None:
                return Verdict(self.default, f"from[] for any caller: {self.default}")
        return Verdict(Action.DENY, f"no MeshTrafficPermission allows {caller}")

    def _service(self, caller: str) -> str | None:
        """The caller's service if it belongs to this mesh; None for anything else."""
        try:
            ident = parse_spiffe_id(caller)
        except PkiError:
            return None
        return ident.service if ident.mesh == self.mesh else None


def _action(conf: Mapping[str, Any]) -> Action | None:
    value = conf.get("action")
    try:
        return Action(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _matchers(confs: Sequence[Any], key: str) -> tuple[SpiffeMatch, ...]:
    out: list[SpiffeMatch] = []
    for conf in confs:
        for item in as_list(conf.get(key) if isinstance(conf, dict) else None):
            spiffe = item.get("spiffeID") if isinstance(item, dict) else None
            if not isinstance(spiffe, dict) or not isinstance(spiffe.get("value"), str):
                continue
            try:
                kind = MatchType(str(spiffe.get("type")))
            except ValueError:
                continue
            match = SpiffeMatch(kind, spiffe["value"])
            if match not in out:
                out.append(match)
    return tuple(out)


def compile_permissions(
    matched: Sequence[Matched], inbound: int, mesh: str, *, mtls_enabled: bool
) -> Permissions:
    """Compiles the MeshTrafficPermissions matched to a dataplane (rules.match) for one of its
    inbounds (its index in networking.inbound). The compiling half of this module imports
    the rules engine here: the sidecar imports the module to evaluate and must not load it
    (decision 187)."""
    from meshfed.policy.rules import callers_by_service, inbound_conf

    if not mtls_enabled:
        return Permissions(mesh=mesh, enforced=False)
    by_tags = caller_entries(matched, inbound)
    if by_tags:
        return _with_rules(_tagged(by_tags, mesh), matched, inbound)
    anyone = inbound_conf(matched, inbound, {})
    sources = list(anyone.sources)
    services: dict[str, Action] = {}
    for service in callers_by_service(matched, inbound):
        merged = inbound_conf(matched, inbound, {SERVICE_TAG: service})
        action = _action(merged.conf)
        if action is not None:
            services[service] = action
        sources += [s for s in merged.sources if s not in sources]
    return _with_rules(
        Permissions(
            mesh=mesh, default=_action(anyone.conf), services=services, sources=tuple(sources)
        ),
        matched,
        inbound,
    )


def _tagged(by_tags: Sequence[tuple[dict[str, str], Entry]], mesh: str) -> Permissions:
    """from[] kept as ordered entries (callers named by tags, meshfed/policy/callers.py)."""
    from meshfed.policy.rules import source_of

    tagged: list[TaggedAction] = []
    sources: list[str] = []
    for required, e in by_tags:
        action = _action(e.default)
        if action is not None:
            tagged.append(TaggedAction(required, action))
        name = source_of(e.policy)
        if name not in sources:
            sources.append(name)
    return Permissions(mesh=mesh, tagged=tuple(tagged), sources=tuple(sources))


def _with_rules(base: Permissions, matched: Sequence[Matched], inbound: int) -> Permissions:
    """`base` (its from[] compiled) with the rules[] SPIFFE ID matchers and their sources."""
    from meshfed.policy.rules import entries, source_of

    sources = list(base.sources)
    rule_entries = entries(matched, "rules", inbound)
    for e in rule_entries:
        name = source_of(e.policy)
        if name not in sources:
            sources.append(name)
    confs = [e.default for e in rule_entries]
    return msgspec.structs.replace(
        base,
        deny=_matchers(confs, "deny"),
        allow=_matchers(confs, "allow"),
        allow_with_shadow_deny=_matchers(confs, "allowWithShadowDeny"),
        sources=tuple(sources),
    )
