"""The state file of `meshctl up` (JSON): who runs where, rewritten on every change.

Other tools and tests read it to find addresses and PIDs, and `meshctl up restart|stop|status`
reads it to find the running supervisor. Readers must ignore fields they do not know (later
issues add components), so parsing here is strict about the fields it needs and lenient about
everything else. Writes go through a temporary file and a rename, so a reader never sees half
a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLE_GLOBAL = "global"
ROLE_ZONE = "zone"
RUNNING = "running"
EXITED = "exited"


class StateFileError(Exception):
    """The state file is missing or unusable; the message says which file and why."""


@dataclass
class ComponentRecord:
    """One supervised process: what it is (fixed for a run) and how it is doing (changes)."""

    name: str
    role: str
    argv: list[str]
    api: str
    data_dir: str
    log: str
    kds: str | None = None
    zone: str | None = None
    dns: str | None = None  # a zone's DNS server, HOST:PORT
    dp: str | None = None  # a zone's dataplane config server, grpc://HOST:PORT
    mads: str | None = None  # a zone's Prometheus discovery (kuma_sd), http://HOST:PORT
    admin: str | None = None  # a demo proxy's admin server, http://HOST:PORT (its /ready)
    pid: int | None = None
    state: str = EXITED
    exit_code: int | None = None  # beyond the contract: why an exited component stopped

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role}
        if self.zone is not None:
            out["zone"] = self.zone
        out |= {"pid": self.pid, "state": self.state, "api": self.api}
        if self.kds is not None:
            out["kds"] = self.kds
        if self.dns is not None:
            out["dns"] = self.dns
        if self.dp is not None:
            out["dpServer"] = self.dp
        if self.mads is not None:
            out["mads"] = self.mads
        if self.admin is not None:
            out["admin"] = self.admin
        out |= {"dataDir": self.data_dir, "log": self.log, "argv": list(self.argv)}
        if self.state == EXITED and self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ComponentRecord:
        if not isinstance(data, dict):
            raise StateFileError(f"{where}: a component must be an object")
        argv = data.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise StateFileError(f"{where}: 'argv' must be a list of strings")
        pid = data.get("pid")
        exit_code = data.get("exitCode")
        return cls(
            name=_text(data, "name", where),
            role=_text(data, "role", where),
            argv=list(argv),
            api=_optional_text(data, "api", where) or "",
            data_dir=_optional_text(data, "dataDir", where) or "",
            log=_optional_text(data, "log", where) or "",
            kds=_optional_text(data, "kds", where),
            zone=_optional_text(data, "zone", where),
            dns=_optional_text(data, "dns", where),
            dp=_optional_text(data, "dpServer", where),
            mads=_optional_text(data, "mads", where),
            admin=_optional_text(data, "admin", where),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            state=_optional_text(data, "state", where) or EXITED,
            exit_code=exit_code
            if isinstance(exit_code, int) and not isinstance(exit_code, bool)
            else None,
        )


@dataclass
class UpState:
    pid: int
    data_dir: str
    control: str
    components: list[ComponentRecord] = field(default_factory=list)
    # `--demo`: the 127.N.0.0/16 its workloads, ingresses and VIPs live in (meshctl/up/demo.py)
    demo_network: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": self.pid,
            "dataDir": self.data_dir,
            "control": self.control,
        }
        if self.demo_network is not None:
            out["demoNetwork"] = self.demo_network
        out["components"] = [c.to_dict() for c in self.components]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> UpState:
        if not isinstance(data, dict):
            raise StateFileError(f"{where}: not a JSON object")
        pid = data.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise StateFileError(f"{where}: 'pid' must be an integer")
        components = data.get("components")
        if not isinstance(components, list):
            raise StateFileError(f"{where}: 'components' must be a list")
        return cls(
            pid=pid,
            data_dir=_text(data, "dataDir", where),
            control=_text(data, "control", where),
            demo_network=_optional_text(data, "demoNetwork", where),
            components=[
                ComponentRecord.from_dict(c, f"{where}: component {i + 1}")
                for i, c in enumerate(components)
            ],
        )

    def component(self, name: str) -> ComponentRecord | None:
        for comp in self.components:
            if comp.name == name:
                return comp
        return None


def write_state(path: Path, state: UpState) -> None:
    """Atomically replaces `path` (a reader sees the old file or the new one, never a mix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(path: Path) -> UpState:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateFileError(f"no state file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"{path} is not valid JSON: {exc}") from None
    return UpState.from_dict(data, str(path))


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise StateFileError(f"{where}: {key!r} must be a non-empty string")
    return value


def _optional_text(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise StateFileError(f"{where}: {key!r} must be a string")
    return value
