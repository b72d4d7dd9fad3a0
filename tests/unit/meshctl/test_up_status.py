"""Status lines from one poll: the global's view first, zones' own views when it is down."""

from __future__ import annotations

from typing import Any

import pytest

from meshctl.up.status import ComponentProbe, exit_text, short, state_text, status_lines


def overview(name: str, state: str = "online", in_sync: bool = True, pending: Any = 0) -> Any:
    return {
        "type": "ZoneOverview",
        "name": name,
        "zoneInsight": {"state": state, "inSync": in_sync, "pending": pending},
    }


def lines(glob: ComponentProbe, *zones: ComponentProbe) -> list[str]:
    return [text for _, text in status_lines(glob, list(zones))]


def test_connected_syncing_offline_from_the_global() -> None:
    glob = ComponentProbe(
        "global",
        True,
        view=[
            overview("zone-1"),
            overview("zone-2", in_sync=False, pending=3),
            overview("zone-3", state="offline"),
        ],
    )
    kds = {"state": "connecting", "lastError": "UNAVAILABLE:\n  refused; last error: " + "x" * 99}
    assert lines(
        glob,
        ComponentProbe("zone-1", True),
        ComponentProbe("zone-2", True),
        ComponentProbe("zone-3", True, view=kds),
        ComponentProbe("zone-10", True, view={"state": "connecting"}),
    ) == [
        "global   up",
        "zone-1   connected",
        "zone-2   syncing (3 pending)",
        "zone-3   offline (per the global; zone sees: connecting, "
        "last error: UNAVAILABLE: refused)",
        "zone-10  offline (not connected yet; zone sees: connecting)",
    ]


def test_global_down_is_said_first_and_zones_speak_for_themselves() -> None:
    glob = ComponentProbe("global", False, exit_code=0)
    assert lines(
        glob,
        ComponentProbe("zone-1", True, view={"state": "disconnected", "lastError": None}),
        ComponentProbe("zone-2", True, api_error="connection refused"),
    ) == [
        "global  DOWN (stopped); zones keep serving what they have",
        "zone-1  offline (global down; zone sees: disconnected)",
        "zone-2  offline (global down; zone API not answering)",
    ]


def test_starting_and_not_answering_and_exited() -> None:
    starting = ComponentProbe("global", True, api_error="connection refused", starting=True)
    assert lines(
        starting,
        ComponentProbe("zone-1", True, api_error="connection refused", starting=True),
        ComponentProbe("zone-2", True, view={"state": "connecting"}),
        ComponentProbe("zone-3", False, exit_code=-9),
    ) == [
        "global  starting",
        "zone-1  starting",
        "zone-2  offline (global starting; zone sees: connecting)",
        "zone-3  killed by SIGKILL",
    ]
    stuck = ComponentProbe("global", True, api_error="timed out")
    assert lines(stuck, ComponentProbe("zone-1", True, view="garbage"))[0:2] == [
        "global  API not answering (timed out)",
        "zone-1  offline (global not answering; zone sees: ?)",
    ]


def test_odd_overviews_never_crash() -> None:
    glob = ComponentProbe(
        "global",
        True,
        view=[None, 3, {"name": 5}, {"name": "zone-1", "zoneInsight": "x"}],
    )
    assert lines(glob, ComponentProbe("zone-1", True, view={}))[1].startswith("zone-1  offline")
    glob = ComponentProbe("global", True, view={"not": "a list"})
    assert "not connected yet" in lines(glob, ComponentProbe("zone-1", True, view={}))[1]
    glob = ComponentProbe("global", True, view=[overview("zone-1", in_sync=False, pending="?")])
    assert lines(glob, ComponentProbe("zone-1", True))[1] == "zone-1  syncing (catching up)"


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (None, "not running"),
        (0, "stopped"),
        (3, "exited with code 3"),
        (-15, "killed by SIGTERM"),
        (-200, "killed by signal 200"),
    ],
)
def test_exit_text(code: int | None, text: str) -> None:
    assert exit_text(code) == text


def test_short() -> None:
    assert short("a\n  b") == "a b"
    assert short("x" * 100, 10) == "xxxxxxx..."


def test_a_live_process_is_running_only_once_ready() -> None:
    assert state_text("running", None, ready=True) == "running"
    assert state_text("running", None, ready=False) == "starting"
    assert state_text("gone", None, ready=False) == "gone"
    assert state_text("exited", -9, ready=False) == "killed by SIGKILL"
    assert state_text("exited", 0, ready=True) == "stopped"
