"""Counters of one DNS server, kept as plain integers.

A Prometheus `Counter.inc()` takes a lock per call, which the UDP hot path cannot afford; the
collector in server.py reads these integers at scrape time instead.
"""

from __future__ import annotations


class DnsStats:
    __slots__ = (
        "dropped",
        "errors",
        "forwarded",
        "queries_tcp",
        "queries_udp",
        "rcodes",
        "send_failures",
        "tcp_evicted",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries_udp = 0
        self.queries_tcp = 0
        self.rcodes = [0] * 16  # answers sent, by the 4-bit header rcode
        self.dropped = 0  # packets not answered (unreadable, or responses)
        self.errors = 0  # unexpected exceptions while answering (a bug if ever non-zero)
        self.forwarded = 0
        self.truncated = 0  # forwarded UDP answers cut to TC
        self.send_failures = 0  # UDP replies the kernel would not take (send buffer full)
        self.tcp_evicted = 0  # idle TCP connections closed to make room for new ones
