"""`meshctl inspect dataplanes|meshes`: DataplaneOverviews and a GlobalInsight as tables."""

from __future__ import annotations

from datetime import UTC, datetime

from meshctl.commands.inspect import DATAPLANE_HEADERS, dataplanes_table, meshes_table, tags_cell
from tests.unit.meshctl.test_up_inspect import parse_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

WEB = {
    "type": "DataplaneOverview",
    "mesh": "default",
    "name": "web-1",
    "labels": {"kuma.io/zone": "zone-1"},
    "state": "online",
    "dataplane": {
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {"port": 1, "tags": {"kuma.io/service": "web", "version": "v1"}},
                {"port": 2, "tags": {"kuma.io/service": "web"}},
            ],
        }
    },
    "dataplaneInsight": {
        "subscriptions": [
            {
                "connectTime": "2024-05-01T10:00:00Z",
                "disconnectTime": "2024-05-01T11:00:00Z",
                "status": {"total": {"responsesSent": 3, "responsesRejected": 1}},
            },
            {
                "connectTime": "2024-05-01T11:59:00Z",
                "status": {
                    "lastUpdateTime": "2024-05-01T11:59:30Z",
                    "total": {"responsesSent": 2, "responsesRejected": 0},
                },
                "version": {"meshfedDp": {"version": "0.9.0"}},
            },
        ],
        "mTLS": {
            "certificateExpirationTime": "2024-05-02T12:00:00Z",
            "lastCertificateRegeneration": "2024-05-01T11:00:00Z",
            "certificateRegenerations": 2,
            "issuedBackend": "ca-1",
        },
    },
}
# Put through the API, no proxy ever connected: no insight, every cell says so.
BARE = {
    "type": "DataplaneOverview",
    "mesh": "default",
    "name": "db",
    "state": "offline",
    "dataplane": {"networking": {"inbound": []}},
    "dataplaneInsight": {},
}


def test_dataplane_rows_have_kumactls_columns_plus_zone_and_state() -> None:
    rows = parse_table(dataplanes_table([WEB, BARE], NOW))
    assert list(rows[0]) == DATAPLANE_HEADERS
    web, bare = rows
    assert web["ZONE"] == "zone-1" and web["STATUS"] == "online"
    assert web["TAGS"] == "kuma.io/service=web version=v1"
    assert web["LAST CONNECTED AGO"] == "60s" and web["LAST UPDATED AGO"] == "30s"
    assert (web["TOTAL UPDATES"], web["TOTAL ERRORS"]) == ("5", "1")  # every subscription
    assert web["CERT REGENERATED AGO"] == "60m"
    assert web["CERT EXPIRATION"] == "2024-05-02 12:00:00"
    assert (web["CERT REGENERATIONS"], web["CERT BACKEND"]) == ("2", "ca-1")
    assert web["DP VERSION"] == "0.9.0"
    assert bare["ZONE"] == "-" and bare["STATUS"] == "offline" and bare["TAGS"] == "-"
    assert bare["LAST CONNECTED AGO"] == "never" and bare["CERT EXPIRATION"] == "-"


def test_tags_are_sorted_and_not_repeated() -> None:
    assert tags_cell(WEB["dataplane"]) == "kuma.io/service=web version=v1"  # type: ignore[arg-type]


def test_meshes_table_has_a_column_per_policy_type_in_use() -> None:
    insight = {
        "meshes": {
            "total": 2,
            "byMesh": {
                "other": {
                    "mtls": None,
                    "dataplanes": {"online": 0, "total": 0},
                    "services": {"online": 0, "total": 0},
                    "policies": {"total": 1, "byType": {"MeshRetry": 1}},
                },
                "default": {
                    "mtls": "ca-1",
                    "dataplanes": {"online": 2, "total": 3},
                    "services": {"online": 1, "total": 2},
                    "policies": {"total": 2, "byType": {"MeshTimeout": 2}},
                },
            },
        }
    }
    rows = parse_table(meshes_table(insight))
    assert rows == [
        {
            "MESH": "default",
            "MTLS": "ca-1",
            "DATAPLANES": "2/3",
            "SERVICES": "1/2",
            "POLICIES": "2",
            "MESHRETRY": "0",
            "MESHTIMEOUT": "2",
        },
        {
            "MESH": "other",
            "MTLS": "off",
            "DATAPLANES": "0/0",
            "SERVICES": "0/0",
            "POLICIES": "1",
            "MESHRETRY": "1",
            "MESHTIMEOUT": "0",
        },
    ]
