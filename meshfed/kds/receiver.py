"""The receiving half of a KDS stream: turn a response into one atomic change set and a reply.

Use:
    for req in receiver.subscribe_requests(): send(req)     # on every (re)connect
    changes, reply = receiver.handle_response(resp, validate)
    apply(changes)              # atomically; on failure drop the stream instead of replying
    receiver.commit(changes)    # only after a successful apply
    send(reply)

Invalid resources are skipped and named in a NACK; everything else of the response is applied.
Held versions are updated only by `commit`, so a failed apply can never make the receiver claim
(on the next subscribe) to hold something it does not, and the sender will send it again.
Nothing is ever deleted because a stream ended or a response did not mention a resource: only
an explicit remove deletes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from meshfed.kds.insight import ReceiveInsight
from meshfed.kds.messages import ErrorDetail, FailedResource, SyncRequest, SyncResponse, from_wire
from meshfed.resources.errors import ValidationError
from meshfed.resources.model import Key, Resource

# Returns why a resource is not acceptable, or None when it is. May raise ValidationError.
Validate = Callable[[Resource], str | None]


@dataclass(slots=True)
class ChangeSet:
    """What one response asks for; the caller applies all of it or none of it."""

    type: str
    upserts: list[Resource] = field(default_factory=list)
    removes: list[Key] = field(default_factory=list)
    versions: dict[Key, str] = field(default_factory=dict)  # KDS version of each upsert

    @property
    def empty(self) -> bool:
        return not self.upserts and not self.removes


class Receiver:
    def __init__(
        self,
        types: Iterable[str],
        *,
        held: Mapping[str, Mapping[Key, str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`held`: versions already stored per type (after a restart, derived from the store)."""
        self._held: dict[str, dict[Key, str]] = {t: {} for t in types}
        for type_name, versions in (held or {}).items():
            if type_name in self._held:
                self._held[type_name] = dict(versions)
        self._insight = {t: ReceiveInsight() for t in self._held}
        self._clock = clock

    @property
    def types(self) -> list[str]:
        return list(self._held)

    def subscribe_requests(self) -> list[SyncRequest]:
        """One per type, stating what is held so the sender sends only the difference."""
        return [
            SyncRequest(type=t, initial_resource_versions=dict(held))
            for t, held in self._held.items()
        ]

    def handle_response(
        self, resp: SyncResponse, validate: Validate
    ) -> tuple[ChangeSet, SyncRequest]:
        changes = ChangeSet(type=resp.type)
        if resp.type not in self._held:
            detail = ErrorDetail(f"resource type {resp.type!r} is not accepted on this stream")
            return changes, SyncRequest(resp.type, resp.nonce, detail)
        insight = self._insight[resp.type]
        insight.responses_received += 1
        insight.last_received_time = self._clock()

        failed: dict[Key, str] = {}
        removed = set(resp.removed)
        for wire in resp.resources:
            key = wire.key
            if key in removed:
                failed[key] = "both upserted and removed in one response"
                continue
            reason = _check(resp.type, wire.name, wire.version)
            res: Resource | None = None
            if reason is None:
                try:
                    res = from_wire(resp.type, wire)
                    reason = validate(res)
                except (ValidationError, ValueError) as exc:
                    reason = str(exc)
                except Exception as exc:  # a validator bug must not take the stream down
                    reason = f"validation failed: {exc!r}"
            if reason is not None or res is None:
                failed[key] = reason or "invalid"
                continue
            if key in changes.versions:  # a duplicate: the last one wins
                changes.upserts = [r for r in changes.upserts if (r.mesh, r.name) != key]
            changes.upserts.append(res)
            changes.versions[key] = wire.version
        for key in resp.removed:
            if not key.name:  # a store cannot look it up: applying it would drop the stream
                failed[key] = f"remove of a {resp.type} without a name"
        changes.removes = [k for k in dict.fromkeys(resp.removed) if k not in failed]

        for key, reason in failed.items():
            insight.rejected[str(key)] = _short(reason)
        if not failed:
            insight.acks_sent += 1
            return changes, SyncRequest(resp.type, resp.nonce)
        detail = ErrorDetail(
            message=nack_message(resp.type, failed),
            failed=[FailedResource(k, reason) for k, reason in failed.items()],
        )
        insight.nacks_sent += 1
        insight.last_nack_time = self._clock()
        insight.last_nack_error = detail.message
        return changes, SyncRequest(resp.type, resp.nonce, detail)

    def commit(self, changes: ChangeSet) -> None:
        """Records that `changes` is applied; from now on it counts as held."""
        held = self._held.get(changes.type)
        if held is None:
            return
        held.update(changes.versions)
        for key in changes.removes:
            held.pop(key, None)
        insight = self._insight[changes.type]
        for key in (*changes.versions, *changes.removes):
            insight.rejected.pop(str(key), None)  # accepted or gone since: no longer refused
        insight.resources_applied += len(changes.upserts)
        insight.removals_applied += len(changes.removes)

    def held(self, type_name: str) -> dict[Key, str]:
        return dict(self._held.get(type_name, {}))

    def insight(self, type_name: str) -> ReceiveInsight:
        return self._insight[type_name]


# A NACK names every refused resource with its reason, each reason cut to this length and the
# whole message to MAX_NACK_MESSAGE, so a response of thousands of bad resources stays small.
MAX_REASON = 300
MAX_NACK_MESSAGE = 4096


def _short(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def nack_message(type_name: str, failed: Mapping[Key, str]) -> str:
    """`2 Dataplane resource(s) rejected: 'a' in mesh 'default': <why>; ...`, bounded."""
    head = f"{len(failed)} {type_name} resource(s) rejected: "
    parts: list[str] = []
    size = len(head)
    for key, reason in failed.items():
        part = f"{key}: {_short(reason)}"
        if size + len(part) + 2 > MAX_NACK_MESSAGE:
            parts.append(f"and {len(failed) - len(parts)} more")
            break
        parts.append(part)
        size += len(part) + 2
    return head + "; ".join(parts)


def _check(type_name: str, name: str, version: str) -> str | None:
    if not name:
        return f"{type_name} without a name"
    if not version:
        return f"{type_name} {name!r} without a version"
    return None
