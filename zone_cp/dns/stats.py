"""Counters of one DNS server, kept as plain integers.

A Prometheus `Counter.inc()` takes a lock per call, which the UDP hot path cannot afford; the
collector in server.py reads these integers at scrape time instead.
"""

from __future__ import annotations

from typing import Final

# Question types 0-255 have a slot each, every larger type shares slot 256 ("other"), and
# replies without a question (a header-only FORMERR) use slot 257; 16 rcodes per type.
OTHER_QTYPE: Final = 256
NO_QUESTION: Final = 257
ANSWER_SLOTS: Final = (NO_QUESTION + 1) << 4


def answer_slot(reply: bytes) -> int:
    """The `answers` index of a reply: its question's type and its rcode.

    Cheap enough for the UDP hot path (one C-level `find`): the question name ends at the
    first zero byte after the header. A name with a zero byte inside a label (legal, never
    seen in practice) is counted under the type read at that byte.
    """
    end = reply.find(0, 12) if reply[5] == 1 and reply[4] == 0 else -1
    if end < 0 or len(reply) < end + 3:
        return NO_QUESTION << 4 | (reply[3] & 0x0F)
    qtype = reply[end + 1] << 8 | reply[end + 2]
    return (qtype if qtype < OTHER_QTYPE else OTHER_QTYPE) << 4 | (reply[3] & 0x0F)


class DnsStats:
    __slots__ = (
        "answers",
        "dropped",
        "errors",
        "forwarded",
        "queries_tcp",
        "queries_udp",
        "send_failures",
        "tcp_evicted",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries_udp = 0
        self.queries_tcp = 0
        # Answers sent, by question type and the 4-bit header rcode: index `answer_slot(reply)`.
        self.answers = [0] * ANSWER_SLOTS
        self.dropped = 0  # packets not answered (unreadable, or responses)
        self.errors = 0  # unexpected exceptions while answering (a bug if ever non-zero)
        self.forwarded = 0
        self.truncated = 0  # forwarded UDP answers cut to TC
        self.send_failures = 0  # UDP replies the kernel would not take (send buffer full)
        self.tcp_evicted = 0  # idle TCP connections closed to make room for new ones
