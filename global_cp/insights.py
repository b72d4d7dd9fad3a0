"""ZoneInsight and ZoneOverview as JSON, from the sync engines' own accounting (pure).

A zone's history is a list of subscriptions (one per KDS connection). The newest one's
status is read live from the engines while the zone is connected, frozen when it
disconnects, and persisted in the ZoneInsight resource so it survives a global restart. The
versions each zone ACKed are persisted too: `_sync` can answer for an offline zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meshfed.kds.insight import ReceiveInsight, SendInsight
from meshfed.resources.model import Key

MAX_SUBSCRIPTIONS = 5  # history kept per zone, newest last


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def key_text(key: Key) -> str:
    """A resource key as one string: `mesh/name`, or `name` for global-scoped types."""
    return f"{key.mesh}/{key.name}" if key.mesh else key.name


def key_from_text(text: str) -> Key:
    mesh, _, name = text.rpartition("/")
    return Key(mesh, name)


@dataclass(frozen=True, slots=True)
class SentType:
    """One type of the global -> zone direction, as the engine and the view report it."""

    insight: SendInsight
    pending: int


def sent_stat(sent: SentType) -> dict[str, Any]:
    ins = sent.insight
    error = ins.last_nack_error or ins.last_error or None
    return {
        "responsesSent": ins.responses_sent,
        "responsesAcknowledged": ins.responses_acked,
        "responsesRejected": ins.responses_nacked,
        "resourcesSent": ins.resources_sent,
        "removalsSent": ins.removals_sent,
        "pending": sent.pending,
        "rejected": dict(ins.rejected),
        "lastError": error,
        "lastErrorTime": rfc3339(ins.last_nack_time) if ins.last_nack_error else None,
    }


def received_stat(ins: ReceiveInsight) -> dict[str, Any]:
    return {
        "responsesReceived": ins.responses_received,
        "responsesAcknowledged": ins.acks_sent,
        "responsesRejected": ins.nacks_sent,
        "resourcesApplied": ins.resources_applied,
        "removalsApplied": ins.removals_applied,
        "rejected": dict(ins.rejected),
        "lastError": ins.last_nack_error or None,
        "lastErrorTime": rfc3339(ins.last_nack_time),
    }


_SENT_TOTALS = ("responsesSent", "responsesAcknowledged", "responsesRejected", "resourcesSent")
_RECEIVED_TOTALS = (
    "responsesReceived",
    "responsesAcknowledged",
    "responsesRejected",
    "resourcesApplied",
)


def _total(stat: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> dict[str, int]:
    return {k: sum(int(s.get(k) or 0) for s in stat.values()) for k in keys}


def subscription_status(
    sent: Mapping[str, SentType], received: Mapping[str, ReceiveInsight]
) -> dict[str, Any]:
    """`lastUpdateTime` is the newest sync activity, so an idle zone's status stays equal."""
    stat = {t: sent_stat(s) for t, s in sent.items()}
    got = {t: received_stat(r) for t, r in received.items()}
    times = [
        t
        for s in sent.values()
        for t in (s.insight.last_sent_time, s.insight.last_ack_time, s.insight.last_nack_time)
        if t is not None
    ] + [r.last_received_time for r in received.values() if r.last_received_time is not None]
    return {
        "lastUpdateTime": rfc3339(max(times)) if times else None,
        "total": _total(stat, _SENT_TOTALS),
        "stat": stat,
        "received": {"total": _total(got, _RECEIVED_TOTALS), "stat": got},
    }


def empty_status() -> dict[str, Any]:
    return subscription_status({}, {})


@dataclass
class Subscription:
    id: str
    global_instance_id: str
    connect_time: float
    disconnect_time: float | None = None
    status: dict[str, Any] = field(default_factory=empty_status)  # frozen or last rendered

    def to_json(self, live_status: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "globalInstanceId": self.global_instance_id,
            "connectTime": rfc3339(self.connect_time),
            "disconnectTime": rfc3339(self.disconnect_time),
            "status": live_status if live_status is not None else self.status,
        }

    @classmethod
    def from_json(cls, data: Any, closed_at: float) -> Subscription | None:
        """From a stored ZoneInsight; one still open there was cut off by a global restart."""
        if not isinstance(data, dict):
            return None
        connect = epoch(data.get("connectTime"))
        if connect is None:
            return None
        disconnect = epoch(data.get("disconnectTime"))
        status = data.get("status")
        return cls(
            id=str(data.get("id") or ""),
            global_instance_id=str(data.get("globalInstanceId") or ""),
            connect_time=connect,
            disconnect_time=disconnect if disconnect is not None else closed_at,
            status=status if isinstance(status, dict) else empty_status(),
        )


@dataclass
class ZoneRecord:
    """What the global remembers of one zone between its connections and across restarts."""

    zone: str
    subscriptions: list[Subscription] = field(default_factory=list)
    last_health_check: float | None = None
    # Versions the zone held when it last went offline (per type): `_sync` and `pending`
    # answer from these while it is offline, even after a global restart.
    versions: dict[str, dict[Key, str]] = field(default_factory=dict)
    written: dict[str, Any] | None = None  # the ZoneInsight body last stored

    def add(self, sub: Subscription) -> None:
        self.subscriptions.append(sub)
        del self.subscriptions[:-MAX_SUBSCRIPTIONS]

    @property
    def current(self) -> Subscription | None:
        return self.subscriptions[-1] if self.subscriptions else None

    def insight_body(self) -> dict[str, Any]:
        """The stored ZoneInsight's fields (no live state: that is rendered on request)."""
        return {
            "subscriptions": [s.to_json() for s in self.subscriptions],
            "lastHealthCheck": rfc3339(self.last_health_check),
            "versions": {
                t: {key_text(k): v for k, v in sorted(held.items())}
                for t, held in sorted(self.versions.items())
            },
        }

    @classmethod
    def from_insight(cls, zone: str, body: Mapping[str, Any], closed_at: float) -> ZoneRecord:
        rec = cls(zone)
        for raw in body.get("subscriptions") or ():
            sub = Subscription.from_json(raw, closed_at)
            if sub is not None:
                rec.add(sub)
        rec.last_health_check = epoch(body.get("lastHealthCheck"))
        versions = body.get("versions")
        if isinstance(versions, dict):
            for type_name, held in versions.items():
                if isinstance(held, dict):
                    rec.versions[str(type_name)] = {
                        key_from_text(str(k)): str(v) for k, v in held.items()
                    }
        rec.written = dict(body)
        return rec
