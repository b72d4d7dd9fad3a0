"""A memo of `policies.outbound_policies` and `policies.load_balancing_conf` shared by the
configs a zone builds (issue 19, decision 132).

Both depend only on the policies matched to the dataplane, the service and its labels: every
sidecar of a service, and every caller with the same matched policies, gets the same answer.
Building it again for each new sidecar (a pydantic model per type, per outbound) was 13 % of
a zone's main thread under cProfile per registration through dataplane streams
(docs/benchmarks.md). The key is the identity of each matched policy and its body, with its
name, mesh and selected inbounds: a zone's policies are the store cache's objects, replaced,
never edited, when a policy changes (meshfed.store.cache), so a change is a new key. An entry
holds the policies it was computed from, so the identities in its key cannot be reused by
other objects while it is kept. Bounded: the oldest entries go first. A `matched` mapping
must not change once asked about (a build makes its own): the key part it gives is computed
once for the consecutive questions about it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from meshfed.dpconfig.model import OutboundPolicies
from meshfed.dpconfig.policies import load_balancing_conf, outbound_policies
from meshfed.policy.rules import Matched
from meshfed.policy.targetref import ServiceLabels
from meshfed.resources.models.load_balancing import LoadBalancingConf

MAX_ENTRIES = 8192
T = TypeVar("T")


class OutboundMemo:
    """The memo; `outbound_policies` and `load_balancing_conf` answer as the functions of
    the same names do."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        # key -> (the answer, the policies the key's identities are of)
        self._entries: dict[Hashable, tuple[Any, tuple[Any, ...]]] = {}
        # The last `matched` asked about (kept: its id stays its own) and its key part.
        self._last: tuple[object, tuple[Matched, ...], Hashable] = (None, (), ())
        self.hits = 0
        self.misses = 0

    def outbound_policies(
        self,
        matched: Mapping[str, Sequence[Matched]],
        service: str,
        labels: ServiceLabels | None = None,
        section: str | None = None,
    ) -> OutboundPolicies:
        """`section`: a MeshService port's name (issue 17), for `to[]` refs naming one."""
        return self._get(outbound_policies, matched, service, labels, section)

    def load_balancing_conf(
        self,
        matched: Mapping[str, Sequence[Matched]],
        service: str,
        labels: ServiceLabels | None = None,
        section: str | None = None,
    ) -> LoadBalancingConf:
        return self._get(load_balancing_conf, matched, service, labels, section)

    def _get(
        self,
        compute: Callable[..., T],
        matched: Mapping[str, Sequence[Matched]],
        service: str,
        labels: ServiceLabels | None,
        section: str | None = None,
    ) -> T:
        if matched is not self._last[0]:  # a build asks for each of its outbounds in turn
            # Every matched type, not only those `compute` reads today: a field added to it
            # that reads another type cannot be answered from a stale entry.
            held = tuple(m for t in sorted(matched) for m in matched[t])
            identity: Hashable = tuple(
                (t, tuple(_identity(m) for m in matched[t])) for t in sorted(matched) if matched[t]
            )
            self._last = (matched, held, identity)
        _, held, identity = self._last
        labelled = None if labels is None else frozenset(labels.items())
        key = (compute, service, labelled, identity, section)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found[0]  # type: ignore[no-any-return]  # stored by this compute
        self.misses += 1
        value = (
            compute(matched, service, labels)
            if section is None
            else compute(matched, service, labels, section)
        )
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        # With the policies and bodies: their ids in the key stay theirs while they live.
        self._entries[key] = (value, (held, tuple(m.policy.spec for m in held)))
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._last = (None, (), ())


def _identity(m: Matched) -> tuple[int, int, str, str, frozenset[int]]:
    p = m.policy
    return (id(p), id(p.spec), p.meta.name, p.meta.mesh, m.inbounds)


MEMO = OutboundMemo()  # one per process: the answers are pure, the key says what they read
