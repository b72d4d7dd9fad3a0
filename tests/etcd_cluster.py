"""A real 3-member etcd cluster for tests: loopback, free ports, its own data dirs, by PID.

Members can be killed (SIGKILL: a crashed machine) and started again on their data directory
and ports, as an operator would bring a member back. `leader()` asks the members which one
leads the Raft group, through etcd's JSON gateway, so a test can kill exactly that one.
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import Proc, free_port, wait_until
from tests.unit.store.etcd_server import ETCD_BINARY

_tokens = itertools.count()


@dataclass
class Member:
    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: Proc | None = None
    starts: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def status(self) -> dict[str, str]:
        """This member's id and the leader's id, as it sees them (raises if unreachable)."""
        req = urllib.request.Request(
            f"{self.endpoint}/v3/maintenance/status",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=2) as resp:
            body = json.load(resp)
        return {"id": str(body["header"]["member_id"]), "leader": str(body.get("leader", ""))}

    def healthy(self) -> bool:
        if not self.alive():
            assert self.proc is not None
            raise AssertionError(f"etcd member {self.name} exited: {self.proc.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as resp:
                return bool(json.load(resp).get("health") == "true")
        except OSError:
            return False


class EtcdCluster:
    def __init__(self, root: Path, log_dir: Path, size: int = 3) -> None:
        self.log_dir = log_dir
        self.token = f"meshfed-test-{os.getpid()}-{next(_tokens)}"
        self.members = [Member(f"etcd-{i}", root / f"etcd-{i}") for i in range(size)]

    @property
    def endpoints(self) -> str:
        """Every member, comma-separated, as `--etcd-endpoints` takes them."""
        return ",".join(m.endpoint for m in self.members)

    def argv(self, member: Member) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        return [
            ETCD_BINARY,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={member.endpoint}",
            f"--advertise-client-urls={member.endpoint}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",  # ignored when the data dir exists (a restart)
            f"--initial-cluster-token={self.token}",
            "--logger=zap",
            "--log-level=error",
            # Loopback: a leader is declared dead after 500 ms, not etcd's default 1 s.
            "--heartbeat-interval=50",
            "--election-timeout=500",
        ]

    def start(self, *members: Member, timeout: float = 30.0) -> None:
        """Starts the members (all at once: a new cluster needs a quorum to elect) and waits
        until each one reports healthy (it has a leader)."""
        todo = list(members or self.members)
        for member in todo:
            member.data_dir.mkdir(parents=True, exist_ok=True)
            member.starts += 1
            member.proc = Proc(
                f"{member.name}-{member.starts}", self.argv(member), self.log_dir, env={}
            )
        for member in todo:
            wait_until(member.healthy, timeout=timeout, what=f"etcd {member.name} healthy")

    def leader(self) -> Member:
        """The member leading the Raft group, as a live member reports it."""

        def find() -> Member | None:
            for member in self.members:
                if not member.alive():
                    continue
                ids = {m.name: m.status()["id"] for m in self.members if m.alive()}
                leader_id = member.status()["leader"]
                for m in self.members:
                    if ids.get(m.name) == leader_id:
                        return m
            return None

        found: Member = wait_until(find, timeout=15, what="an etcd leader")
        return found

    def kill(self, member: Member) -> None:
        assert member.proc is not None
        member.proc.kill()

    def stop(self) -> None:
        for member in self.members:
            if member.proc is not None:
                member.proc.stop()

    def logs(self) -> str:
        return "\n".join(
            f"===== {m.name} =====\n{m.proc.log()[-2000:]}" for m in self.members if m.proc
        )
