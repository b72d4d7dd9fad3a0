"""`meshctl inspect zones`: ZoneOverview items condensed into a table (pure cells)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from meshctl.commands.inspect import (
    disconnected_cell,
    last_connected_cell,
    last_error_cell,
    sync_cell,
    totals_cell,
    zones_table,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows keyed by header; columns are separated by three or more spaces."""
    header, *lines = text.splitlines()
    names = re.split(r" {3,}", header)
    return [dict(zip(names, re.split(r" {3,}", line), strict=True)) for line in lines]


def stat(sent: int, acked: int, nacked: int, error: str | None = None, when: Any = None) -> Any:
    return {
        "responsesSent": sent,
        "responsesAcknowledged": acked,
        "responsesRejected": nacked,
        "pending": 0,
        "lastError": error,
        "lastErrorTime": when,
    }


def sub(connect: str, total: tuple[int, int, int], stats: dict[str, Any]) -> Any:
    return {
        "id": "s",
        "globalInstanceId": "g",
        "connectTime": connect,
        "disconnectTime": None,
        "status": {
            "lastUpdateTime": connect,
            "total": dict(
                zip(
                    ("responsesSent", "responsesAcknowledged", "responsesRejected"),
                    total,
                    strict=True,
                )
            ),
            "stat": stats,
        },
    }


ZONE_1 = {
    "type": "ZoneOverview",
    "name": "zone-1",
    "zone": {"enabled": True},
    "zoneInsight": {
        "state": "online",
        "inSync": False,
        "pending": 4,
        "lastHealthCheck": "2024-05-01T11:59:59Z",
        "subscriptions": [
            sub(
                "2024-05-01T10:00:00Z",
                (10, 8, 2),
                {"MeshTimeout": stat(5, 4, 1, "spec.to[0]: bad\nduration", "2024-05-01T10:05:00Z")},
            ),
            sub(
                "2024-05-01T11:59:15.123456789Z",
                (3, 3, 0),
                {
                    "Mesh": stat(3, 3, 0),
                    "MeshRetry": stat(1, 0, 1, "older error", "2024-05-01T10:01:00Z"),
                },
            ),
        ],
    },
}
ZONE_2 = {
    "type": "ZoneOverview",
    "name": "zone-2",
    "zoneInsight": {"state": "offline", "inSync": True, "pending": 0, "subscriptions": []},
}


def test_table_of_two_zones() -> None:
    rows = parse_table(zones_table([ZONE_1, ZONE_2], NOW))
    assert rows == [
        {
            "NAME": "zone-1",
            "STATUS": "online",
            "SYNC": "4 pending",
            "LAST CONNECTED": "44s ago",
            "DISCONNECTED": "-",
            "SENT/ACKED/NACKED": "13/11/2",
            "LAST ERROR": "MeshTimeout: spec.to[0]: bad duration",
        },
        {
            "NAME": "zone-2",
            "STATUS": "offline",
            "SYNC": "in sync",
            "LAST CONNECTED": "never",
            "DISCONNECTED": "-",
            "SENT/ACKED/NACKED": "0/0/0",
            "LAST ERROR": "-",
        },
    ]


def test_an_offline_zone_shows_when_it_disconnected() -> None:
    gone = sub("2024-05-01T11:00:00Z", (1, 1, 0), {})
    gone["disconnectTime"] = "2024-05-01T11:58:00Z"
    insight = {"state": "offline", "subscriptions": [gone]}
    assert disconnected_cell(insight, NOW) == "2m ago"
    assert disconnected_cell({**insight, "state": "online"}, NOW) == "-"


def test_last_error_is_truncated_and_ties_go_to_the_newest_subscription() -> None:
    insight = {
        "subscriptions": [
            sub("2024-05-01T10:00:00Z", (0, 0, 0), {"A": stat(0, 0, 0, "first")}),
            sub("2024-05-01T11:00:00Z", (0, 0, 0), {"B": stat(0, 0, 0, "x" * 100)}),
        ]
    }
    cell = last_error_cell(insight, limit=20)
    assert cell == "B: xxxxxxxxxxxxxx..."
    assert len(cell) == 20


def test_odd_insights_show_placeholders_instead_of_failing() -> None:
    odd: Any = {
        "subscriptions": [None, {"status": "x"}, {"status": {"total": {"responsesSent": "7"}}}]
    }
    assert totals_cell(odd) == "0/0/0"
    assert last_error_cell(odd) == "-"
    assert last_connected_cell(odd, NOW) == "-"
    assert sync_cell({}) == "-"
    assert sync_cell({"inSync": False, "pending": True}) == "-"
    rows = parse_table(zones_table([{"name": "z", "zoneInsight": None}], NOW))
    assert rows[0]["STATUS"] == "offline"
