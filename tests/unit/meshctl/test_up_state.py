"""The `meshctl up` state file: the contract's shape, round trips, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshctl.up.state import (
    EXITED,
    RUNNING,
    ComponentRecord,
    StateFileError,
    UpState,
    read_state,
    write_state,
)


def _state() -> UpState:
    return UpState(
        pid=100,
        data_dir="/d",
        control="/d/up.sock",
        components=[
            ComponentRecord(
                name="global",
                role="global",
                argv=["global-cp", "run"],
                api="http://127.0.0.1:1",
                kds="grpc://127.0.0.1:2",
                data_dir="/d/global",
                log="/d/logs/global.log",
                pid=101,
                state=RUNNING,
            ),
            ComponentRecord(
                name="zone-1",
                role="zone",
                zone="zone-1",
                argv=["zone-cp", "run", "--zone", "zone-1"],
                api="http://127.0.0.1:3",
                data_dir="/d/zone-1",
                log="/d/logs/zone-1.log",
                state=EXITED,
                exit_code=2,
            ),
        ],
    )


def test_shape_follows_the_contract() -> None:
    data = _state().to_dict()
    assert list(data) == ["pid", "dataDir", "control", "components"]
    glob, zone = data["components"]
    assert glob == {
        "name": "global",
        "role": "global",
        "pid": 101,
        "state": "running",
        "api": "http://127.0.0.1:1",
        "kds": "grpc://127.0.0.1:2",
        "dataDir": "/d/global",
        "log": "/d/logs/global.log",
        "argv": ["global-cp", "run"],
    }
    assert zone["zone"] == "zone-1"
    assert zone["pid"] is None
    assert zone["state"] == "exited"
    assert zone["exitCode"] == 2
    assert "kds" not in zone


def test_write_then_read_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    write_state(path, _state())
    write_state(path, _state())  # replaces
    assert read_state(path) == _state()
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    data = _state().to_dict()
    data["future"] = {"x": 1}
    data["components"].append(
        {"name": "dns-1", "role": "dns", "argv": [], "state": "running", "pid": 7, "udp": 53}
    )
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data))
    state = read_state(path)
    assert [c.name for c in state.components] == ["global", "zone-1", "dns-1"]
    assert state.component("dns-1") is not None
    assert state.component("nope") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"pid": "1", "dataDir": "/d", "control": "/c", "components": []}', "'pid'"),
        ('{"pid": true, "dataDir": "/d", "control": "/c", "components": []}', "'pid'"),
        ('{"pid": 1, "dataDir": "/d", "control": "/c", "components": {}}', "'components'"),
        ('{"pid": 1, "dataDir": "", "control": "/c", "components": []}', "'dataDir'"),
        ('{"pid": 1, "dataDir": "/d", "control": "/c", "components": [3]}', "component 1"),
        (
            '{"pid": 1, "dataDir": "/d", "control": "/c", '
            '"components": [{"name": "g", "role": "global", "argv": "x"}]}',
            "'argv'",
        ),
        (
            '{"pid": 1, "dataDir": "/d", "control": "/c", '
            '"components": [{"name": "g", "role": "global", "argv": [], "api": 5}]}',
            "'api'",
        ),
    ],
)
def test_bad_files_get_an_error_naming_the_file_and_field(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(StateFileError) as exc:
        read_state(path)
    assert str(path) in str(exc.value)
    assert reason in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="no state file at"):
        read_state(tmp_path / "nope.json")
