"""Per-type sync accounting, kept by the engine so ZoneInsight needs no bookkeeping of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SendInsight:
    """One type, sending side: what was sent and how the peer answered."""

    responses_sent: int = 0
    responses_acked: int = 0
    responses_nacked: int = 0
    resources_sent: int = 0  # upserts, over all responses
    removals_sent: int = 0
    subscriptions: int = 0  # (re)subscribes seen: 1 + reconnects
    stale_replies: int = 0  # ACK/NACKs for a nonce not in flight (a previous stream's)
    last_sent_time: float | None = None
    last_ack_time: float | None = None
    last_nack_time: float | None = None
    last_nack_error: str = ""
    # Resources not sent, by key string: the peer rejected them, or they are too big.
    rejected: dict[str, str] = field(default_factory=dict)
    last_error: str = ""  # the newest local problem (e.g. a resource over the size limit)

    def to_json(self) -> dict[str, Any]:
        return {
            "responsesSent": self.responses_sent,
            "responsesAcknowledged": self.responses_acked,
            "responsesRejected": self.responses_nacked,
            "resourcesSent": self.resources_sent,
            "removalsSent": self.removals_sent,
            "subscriptions": self.subscriptions,
            "lastSentTime": self.last_sent_time,
            "lastAckTime": self.last_ack_time,
            "lastNackTime": self.last_nack_time,
            "lastNackError": self.last_nack_error,
            "rejected": dict(self.rejected),
            "lastError": self.last_error,
        }


@dataclass(slots=True)
class ReceiveInsight:
    """One type, receiving side: what arrived and how it was answered."""

    responses_received: int = 0
    acks_sent: int = 0
    nacks_sent: int = 0
    resources_applied: int = 0
    removals_applied: int = 0
    last_received_time: float | None = None
    last_nack_time: float | None = None
    last_nack_error: str = ""
    # Each resource refused and not since accepted or removed: key -> why (issue 16: the
    # count alone did not say which resource was wrong, nor why).
    rejected: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "responsesReceived": self.responses_received,
            "acksSent": self.acks_sent,
            "nacksSent": self.nacks_sent,
            "resourcesApplied": self.resources_applied,
            "removalsApplied": self.removals_applied,
            "lastReceivedTime": self.last_received_time,
            "lastNackTime": self.last_nack_time,
            "lastNackError": self.last_nack_error,
            "rejected": dict(self.rejected),
        }
