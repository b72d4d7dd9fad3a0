"""The sending half of a KDS stream: what to send next, given what the peer holds.

One Sender per stream direction, one state per type. The caller keeps the desired set current
(`replace_all` / `upsert` / `remove`), feeds in the peer's requests (`handle_request`),
writes whatever `next_response` returns, and calls `disconnect` when the stream ends (the same
Sender may then serve the peer's next stream). Rules, each learned from Kuma's field issues:

- At most one response per type is in flight; the next waits for its ACK/NACK. Changes made
  meanwhile only mark keys dirty, so a burst is coalesced and only the newest state is sent.
- Nothing is sent for a type before `replace_all` has loaded its complete desired set.
- The peer states what it holds when it subscribes, so after a reconnect only the difference
  is sent (resume). Removes are sent only for keys the peer holds and we no longer want.
- A response fits the max message size; a single resource over it is reported (naming type
  and resource) and skipped without blocking the rest.
- A NACKed resource is remembered as rejected at that version and not re-sent until it changes
  (or the peer re-subscribes), so a bad resource cannot cause a hot loop.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from meshfed.kds.insight import SendInsight
from meshfed.kds.messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    KdsProtocolError,
    SyncRequest,
    SyncResponse,
    WireResource,
    removed_size,
    response_overhead,
    upsert_size,
)
from meshfed.resources.model import Key

# Marks a removal in `rejected`: the peer refused to delete the key.
_REMOVED = ""


@dataclass(frozen=True, slots=True)
class _InFlight:
    nonce: str
    upserts: dict[Key, str]  # key -> version sent
    removes: frozenset[Key]


@dataclass(slots=True)
class _TypeState:
    desired: dict[Key, WireResource] = field(default_factory=dict)
    peer: dict[Key, str] = field(default_factory=dict)  # what the peer holds (ACKed/declared)
    # key -> the desired version the peer rejected (_REMOVED for a refused removal).
    rejected: dict[Key, str] = field(default_factory=dict)
    # Keys whose desired state may differ from the peer's; only these are examined.
    dirty: set[Key] = field(default_factory=set)
    subscribed: bool = False
    # Set by replace_all: until the caller has loaded the complete desired set, "not desired"
    # could just mean "not loaded yet", so nothing is sent (a fresh global must never tell a
    # zone to delete everything it holds).
    loaded: bool = False
    in_flight: _InFlight | None = None
    insight: SendInsight = field(default_factory=SendInsight)


class Sender:
    def __init__(
        self,
        types: Iterable[str],
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._types = {t: _TypeState() for t in types}
        self._max = max_message_size
        self._clock = clock
        self._nonces = itertools.count(1)
        self._errors: list[str] = []

    @property
    def types(self) -> list[str]:
        return list(self._types)

    # -- desired state ---------------------------------------------------------------------

    def replace_all(self, type_name: str, resources: Iterable[WireResource]) -> None:
        """Sets the complete desired set of a type (e.g. from a fresh list of the store)."""
        st = self._state(type_name)
        new = {r.key: r for r in resources}
        for key in st.desired.keys() - new.keys():
            st.dirty.add(key)
        for key, res in new.items():
            old = st.desired.get(key)
            if old is None or old.version != res.version:
                st.dirty.add(key)
        st.desired = new
        st.loaded = True

    def upsert(self, type_name: str, res: WireResource) -> None:
        st = self._state(type_name)
        st.desired[res.key] = res
        st.dirty.add(res.key)

    def remove(self, type_name: str, key: Key) -> None:
        st = self._state(type_name)
        if st.desired.pop(key, None) is not None or key in st.peer:
            st.dirty.add(key)

    def desired(self, type_name: str) -> dict[Key, WireResource]:
        return dict(self._state(type_name).desired)

    # -- protocol ----------------------------------------------------------------------------

    def handle_request(self, req: SyncRequest) -> None:
        """A subscribe, ACK or NACK from the peer. Raises KdsProtocolError for unknown types."""
        st = self._state(req.type)
        now = self._clock()
        if req.is_subscribe:
            # A new stream: whatever was in flight on the old one is void, and what the peer
            # holds is exactly what it says. A reconnect is also when rejected resources get
            # another chance (the peer may have been fixed or upgraded).
            st.subscribed = True
            st.in_flight = None
            st.peer = dict(req.initial_resource_versions)
            st.rejected.clear()
            st.insight.rejected.clear()
            st.dirty = set(st.desired) | set(st.peer)
            st.insight.subscriptions += 1
            return
        flight = st.in_flight
        if flight is None or req.response_nonce != flight.nonce:
            st.insight.stale_replies += 1
            return
        st.in_flight = None
        if req.error_detail is None:
            for key, version in flight.upserts.items():
                self._held(st, key, version)
            for key in flight.removes:
                self._held(st, key, None)
            st.insight.responses_acked += 1
            st.insight.last_ack_time = now
            return
        failed = {f.key: f.reason for f in req.error_detail.failed}
        if not failed.keys() & (flight.upserts.keys() | flight.removes):
            # The NACK names nothing we sent: the whole response was refused.
            failed = dict.fromkeys(itertools.chain(flight.upserts, flight.removes), "")
        for key, version in flight.upserts.items():
            if key in failed:
                self._reject(st, key, version, failed[key] or req.error_detail.message)
            else:
                self._held(st, key, version)
        for key in flight.removes:
            if key in failed:
                self._reject(st, key, _REMOVED, failed[key] or req.error_detail.message)
            else:
                self._held(st, key, None)
        st.insight.responses_nacked += 1
        st.insight.last_nack_time = now
        st.insight.last_nack_error = req.error_detail.message

    def disconnect(self) -> None:
        """The stream ended: send nothing until the peer subscribes on a new one.

        The reply to what was in flight will never come, and whatever is written before the
        peer's new subscribe would be sent against an outdated view of what it holds. What the
        peer last ACKed stays visible (insight) until its next subscribe replaces it.
        """
        for st in self._types.values():
            st.subscribed = False
            st.in_flight = None

    def next_response(self, type_name: str) -> SyncResponse | None:
        """The next delta for a type, or None: in sync, one in flight, not subscribed or loaded."""
        st = self._state(type_name)
        if not (st.subscribed and st.loaded) or st.in_flight is not None:
            return None
        budget = self._max - response_overhead(type_name)
        used = 0
        upserts: list[WireResource] = []
        removes: list[Key] = []
        done: list[Key] = []
        for key in sorted(st.dirty):
            change = self._change(st, key)
            if change is None:
                done.append(key)
                continue
            size = upsert_size(change) if isinstance(change, WireResource) else removed_size(key)
            if size > budget:
                self._too_big(st, type_name, key, size)
                done.append(key)
                continue
            if used + size > budget:
                break  # the rest goes in the next response, after this one is ACKed
            used += size
            done.append(key)
            if isinstance(change, WireResource):
                upserts.append(change)
            else:
                removes.append(key)
        st.dirty.difference_update(done)
        if not upserts and not removes:
            return None
        nonce = str(next(self._nonces))
        st.in_flight = _InFlight(
            nonce=nonce,
            upserts={r.key: r.version for r in upserts},
            removes=frozenset(removes),
        )
        st.insight.responses_sent += 1
        st.insight.resources_sent += len(upserts)
        st.insight.removals_sent += len(removes)
        st.insight.last_sent_time = self._clock()
        return SyncResponse(type=type_name, resources=upserts, removed=removes, nonce=nonce)

    def ready_types(self) -> list[str]:
        """Types for which next_response may return something (cheap; may over-report)."""
        return [
            t
            for t, st in self._types.items()
            if st.subscribed and st.loaded and st.in_flight is None and st.dirty
        ]

    def in_sync(self, type_name: str) -> bool:
        """True when the peer holds the desired state, apart from resources it rejected."""
        st = self._state(type_name)
        if not (st.subscribed and st.loaded) or st.in_flight is not None:
            return False
        return all(self._change(st, key) is None for key in st.dirty)

    # -- insight -----------------------------------------------------------------------------

    def insight(self, type_name: str) -> SendInsight:
        return self._state(type_name).insight

    def acked_versions(self, type_name: str) -> dict[Key, str]:
        """What the peer holds, per resource: the versions it ACKed or declared on subscribe."""
        return dict(self._state(type_name).peer)

    def acked_version(self, type_name: str, key: Key) -> str | None:
        return self._state(type_name).peer.get(key)

    def in_flight(self, type_name: str) -> bool:
        return self._state(type_name).in_flight is not None

    def drain_errors(self) -> list[str]:
        """Local problems found since the last call (for the caller to log)."""
        errors, self._errors = self._errors, []
        return errors

    # -- internals ---------------------------------------------------------------------------

    def _state(self, type_name: str) -> _TypeState:
        st = self._types.get(type_name)
        if st is None:
            raise KdsProtocolError(f"resource type {type_name!r} is not synced on this stream")
        return st

    @staticmethod
    def _change(st: _TypeState, key: Key) -> WireResource | Key | None:
        """What to send for a key: the resource, its removal, or nothing."""
        want = st.desired.get(key)
        want_version = want.version if want is not None else None
        if want_version == st.peer.get(key):
            if st.rejected.pop(key, None) is not None:  # back to what the peer accepted
                st.insight.rejected.pop(str(key), None)
            return None
        if st.rejected.get(key) == (want_version or _REMOVED):
            return None  # refused at exactly this state; wait until it changes
        if want is not None:
            return want
        return key if key in st.peer else None

    @staticmethod
    def _held(st: _TypeState, key: Key, version: str | None) -> None:
        """The peer now holds `version` of the key (None: does not hold it)."""
        if version is None:
            st.peer.pop(key, None)
        else:
            st.peer[key] = version
        if st.rejected.pop(key, None) is not None:
            st.insight.rejected.pop(str(key), None)

    def _reject(self, st: _TypeState, key: Key, version: str, reason: str) -> None:
        st.rejected[key] = version
        st.insight.rejected[str(key)] = reason

    def _too_big(self, st: _TypeState, type_name: str, key: Key, size: int) -> None:
        msg = (
            f"{type_name} {key} is {size} bytes encoded, over the KDS max message size of "
            f"{self._max} bytes: it is not synced until it shrinks or the limit is raised"
        )
        want = st.desired.get(key)
        self._reject(st, key, want.version if want is not None else _REMOVED, msg)
        st.insight.last_error = msg
        self._errors.append(msg)
