"""Real global-cp and zone-cp processes for the federation tests, and ways to observe them.

Everything talks to the processes the way users and tools do: REST over loopback, `/_watch`
streams, gRPC for raw KDS clients. Processes are started in parallel and waited on with
deadlines; each is stopped by PID (the `procs` fixture).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from meshfed.kds.naming import types_global_to_zone
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.types import default_registry
from tests.auth_support import ADMIN_TOKEN_FILE, bearer
from tests.support import Proc, Procs, free_port, wait_until

DOWN_TYPES = types_global_to_zone(default_registry())
# Zone ingresses are relayed zone to zone; the rest is the global's own.
GLOBAL_TYPES = [t for t in DOWN_TYPES if t != "ZoneIngress"]
FAST_GLOBAL = [
    "--zone-health-interval",
    "200ms",
    "--zone-offline-timeout",
    "3s",
    "--zone-insight-flush",
    "200ms",
]
FAST_ZONE = ["--kds-reconnect-max", "500ms", "--kds-stale-timeout", "3s"]

# -- KDS security: the global's admin token and KDS CA, each zone's token (issue 11) ------------
KDS_CA_NAME = "kds-ca.crt"  # under a test's root, written by the global (--kds-ca-out)


def admin_token_path(root: Path) -> Path:
    return root / "global" / "admin-token"


def kds_ca_path(root: Path) -> Path:
    return root / KDS_CA_NAME


def zone_token_path(root: Path, zone: str) -> Path:
    return root / f"{zone}.zone-token"


def global_security_args(root: Path) -> list[str]:
    """The global writes its admin token and its KDS CA certificate where the tests read."""
    return [
        "--admin-token-file",
        str(admin_token_path(root)),
        "--kds-ca-out",
        str(kds_ca_path(root)),
    ]


def zone_security_args(root: Path, zone: str) -> list[str]:
    """A zone pinned to the global's KDS CA, presenting its own token."""
    return [
        "--zone-token-file",
        str(zone_token_path(root, zone)),
        "--kds-ca-file",
        str(kds_ca_path(root)),
    ]


def read_admin_token(root: Path) -> str:
    return admin_token_path(root).read_text().strip()


def request_zone_token(
    api_port: int,
    admin_token: str,
    zone: str,
    scope: tuple[str, ...] = ("kds", "ingress"),
    valid_for: str = "24h",
) -> str:
    """`POST /tokens/zone` with the admin token; the token (AssertionError on failure)."""
    body = json.dumps({"zone": zone, "scope": list(scope), "validFor": valid_for}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/tokens/zone", data=body, method="POST"
    )
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {admin_token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and resp.headers.get_content_type() == "text/plain"
        return str(resp.read().decode()).strip()


def kds_channel(root: Path, port: int) -> grpc.aio.Channel:
    """A raw gRPC channel to the global's KDS port, checking it against its KDS CA."""
    creds = grpc.ssl_channel_credentials(root_certificates=kds_ca_path(root).read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


def kds_metadata(root: Path, api_port: int, zone: str) -> tuple[tuple[str, str], ...]:
    """What a raw KDS client of `zone` sends: its name and a fresh token for it."""
    token = request_zone_token(api_port, read_admin_token(root), zone, scope=("kds",))
    return (("client-id", zone), ("authorization", f"Bearer {token}"))


def provision_zone(root: Path, api_port: int, zone: str) -> Path:
    """Issues `zone` a token through the global at `api_port` and writes it (0600)."""
    path = zone_token_path(root, zone)
    token = request_zone_token(api_port, read_admin_token(root), zone)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


class Http:
    """A control plane's API. Calls carry the admin token the global wrote to `token_file`
    once it is there (it is written at the global's start; zones accept it too)."""

    def __init__(self, port: int, token_file: Path | None = None) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token_file = token_file

    def token(self) -> str:
        """The admin token, once the global has written it ("" before)."""
        try:
            return self.token_file.read_text().strip() if self.token_file else ""
        except FileNotFoundError:
            return ""

    def headers(self) -> dict[str, str]:
        token = self.token()
        return bearer(token) if token else {}

    def accepts_admin(self) -> bool:
        """Whether this control plane takes the admin token: a zone does once the global's
        user-token keys reached it over KDS."""
        return self.call("GET", "/global-secrets?size=1")[0] == 200

    def meshctl_env(self) -> dict[str, str]:
        """Environment for a meshctl run as this cluster's admin."""
        return {"MESHFED_API_TOKEN": self.token()}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for name, value in self.headers().items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        return status, json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def put(self, path: str, body: Any) -> Any:
        status, got = self.call("PUT", path, body)
        assert status in (200, 201), (path, status, got)
        return got

    def delete(self, path: str) -> None:
        status, got = self.call("DELETE", path)
        assert status == 200, (path, status, got)

    def ready(self) -> bool:
        try:
            return self.call("GET", "/ready")[0] == 200
        except OSError:
            return False

    def items(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list endpoint, following `next`."""
        out: list[dict[str, Any]] = []
        page = self.get(path + ("&" if "?" in path else "?") + "size=1000")
        out += page["items"]
        while page["next"]:
            page = self.get(page["next"].removeprefix(self.base))
            out += page["items"]
        return out


class TokenHttp(Http):
    """An Http client that sends `Authorization: Bearer <token>` (e.g. the admin token)."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(port)
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        return status, json.loads(raw) if raw else None


@dataclass
class Node:
    name: str
    argv: list[str]
    http: Http
    data_dir: Path
    proc: Proc | None = None
    kds_port: int | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return self.http.base

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


@dataclass
class Cluster:
    """One global and N zones on free loopback ports, SQLite stores under tmp_path."""

    procs: Procs
    root: Path
    zones: dict[str, Node] = field(default_factory=dict)
    global_: Node | None = None

    @classmethod
    def create(
        cls,
        procs: Procs,
        root: Path,
        zone_names: tuple[str, ...] = ("zone-1", "zone-2"),
        global_args: tuple[str, ...] = (),
        zone_args: tuple[str, ...] = (),
    ) -> Cluster:
        cluster = cls(procs, root)
        api, kds = free_port(), free_port()
        token_file = root / "global" / ADMIN_TOKEN_FILE
        argv = [
            procs.script("global-cp"),
            "run",
            "--api-address",
            f"127.0.0.1:{api}",
            "--kds-address",
            f"127.0.0.1:{kds}",
            "--data-dir",
            str(root / "global"),
            *global_security_args(root),
            *FAST_GLOBAL,
            *global_args,
        ]
        cluster.global_ = Node("global", argv, Http(api, token_file), root / "global", kds_port=kds)
        for name in zone_names:
            port = free_port()
            argv = [
                procs.script("zone-cp"),
                "run",
                "--zone",
                name,
                "--global-kds",
                f"grpc://127.0.0.1:{kds}",
                "--api-address",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(root / name),
                *zone_security_args(root, name),
                *FAST_ZONE,
                *zone_args,
            ]
            cluster.zones[name] = Node(name, argv, Http(port, token_file), root / name)
        return cluster

    @property
    def glob(self) -> Node:
        assert self.global_ is not None
        return self.global_

    def admin_token(self) -> str:
        """The global's bootstrap admin user token (its `--admin-token-file`)."""
        return read_admin_token(self.root)

    def nodes(self) -> list[Node]:
        return [self.glob, *self.zones.values()]

    def start(self, *nodes: Node) -> None:
        """Starts the nodes and waits until every one serves its API: the global first, then
        (once every zone to start has a token from it) the zones, all at once."""
        todo = list(nodes or self.nodes())
        first = [n for n in todo if n is self.global_]
        for group in (first, [n for n in todo if n is not self.global_]):
            for node in group:
                if node is not self.global_ and not zone_token_path(self.root, node.name).exists():
                    provision_zone(self.root, self.glob.http.port, node.name)
            for node in group:
                node.restarts += 1
                node.proc = self.procs.start(f"{node.name}-{node.restarts}", node.argv)
            for node in group:
                _wait_ready(node)

    def stop(self, node: Node, sig: int = signal.SIGTERM) -> None:
        assert node.proc is not None
        if sig == signal.SIGKILL:
            node.proc.kill()
            return
        node.proc.signal(sig)
        node.proc.popen.wait(15)
        assert node.proc.popen.returncode == 0, node.proc.log()

    def zone_state(self, zone: str) -> dict[str, Any]:
        return dict(self.glob.http.get(f"/zones/{zone}/_overview")["zoneInsight"])

    def wait_online(self, *zones: str, timeout: float = 20) -> None:
        """Connected, and holding every Mesh the global has: a zone accepts a Dataplane only
        into a mesh it knows, and "connected" alone does not mean the meshes arrived."""

        def meshes(http: Http) -> set[str]:
            return {m["name"] for m in http.items("/meshes")}

        def online(zone: str) -> bool:
            return bool(
                self.zone_state(zone)["state"] == "online"
                and self.zones[zone].http.get("/_kds")["state"] == "connected"
                and meshes(self.glob.http) <= meshes(self.zones[zone].http)
                and self.zones[zone].http.accepts_admin()
            )

        for zone in zones or tuple(self.zones):
            wait_until(functools.partial(online, zone), timeout=timeout, what=f"{zone} online")

    def wait_converged(self, timeout: float = 30) -> None:
        """Every zone holds exactly the global's resources (digest of what users control)."""

        def converged() -> bool:
            want = global_digest(self.glob.http)
            return all(zone_digest(z.http) == want for z in self.zones.values())

        wait_until(converged, timeout=timeout, interval=0.1, what="zones converge")


def _wait_ready(node: Node, timeout: float = 30) -> None:
    """Until the node serves its API. Fails at once if it exits, and insists on its own log
    line for the port: on a shared machine another test may grab a port between a stop and a
    restart, and its /ready must not pass for ours."""
    assert node.proc is not None
    listening = f"API listening on {node.url} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.proc.alive():
            raise AssertionError(f"{node.name} exited:\n{node.proc.log()[-3000:]}")
        if listening in node.proc.log() and node.http.ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"{node.name} not ready after {timeout}s:\n{node.proc.log()[-3000:]}")


# -- digests ----------------------------------------------------------------------------------


def _user_labels(item: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (item.get("labels") or {}).items() if not k.startswith("kuma.io/")}


def _body(item: dict[str, Any]) -> Any:
    meta = {"type", "mesh", "name", "creationTime", "modificationTime", "labels"}
    return item["spec"] if "spec" in item else {k: v for k, v in item.items() if k not in meta}


def digest(items: list[dict[str, Any]]) -> str:
    rows = sorted(
        json.dumps(
            [i["type"], i.get("mesh", ""), i["name"], _user_labels(i), _body(i)], sort_keys=True
        )
        for i in items
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _listing(http: Http, type_name: str) -> list[dict[str, Any]]:
    plural = default_registry().get(type_name).plural
    return http.items(f"/{plural}")


def global_digest(http: Http) -> str:
    """What the global sends: a GlobalSecret only when zones get it (public keys)."""
    items = [i for t in GLOBAL_TYPES for i in _listing(http, t)]
    return digest([i for i in items if _sent_to_zones(i)])


def _sent_to_zones(item: dict[str, Any]) -> bool:
    registry = default_registry()
    desc = registry.get(item["type"])
    res = resource_from_dict(item, registry, validate=False)
    return desc.sync_to_zones is None or desc.sync_to_zones(res)


def zone_digest(http: Http) -> str:
    """The zone's copies of the global's own types (its origin-global resources)."""
    items = [i for t in GLOBAL_TYPES for i in _listing(http, t)]
    return digest([i for i in items if i.get("labels", {}).get("kuma.io/origin") == "global"])


# -- watching a store -------------------------------------------------------------------------


class StoreWatch:
    """Reads a control plane's `GET /_watch` in a thread, keeping every event."""

    def __init__(self, api: Http, types: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        path = "/_watch" + (f"?types={types}" if types else "")
        self._conn.request("GET", path, headers=api.headers())
        # The headers come after the server subscribed: from here on nothing is missed.
        self._resp = self._conn.getresponse()
        assert self._resp.status == 200
        if self._conn.sock is not None:
            self._conn.sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._resp:
                if line.strip():
                    self.events.append(json.loads(line))
        except Exception as exc:  # the connection was closed under us: recorded for asserts
            self.error = exc
        finally:
            self.ended.set()

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["kind"] == kind]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._conn.sock is not None:
                self._conn.sock.shutdown(2)
        self._conn.close()
        self._thread.join(5)


# -- resources --------------------------------------------------------------------------------


def timeout_policy(name: str, idle: str = "20s", mesh: str = "default") -> dict[str, Any]:
    return {
        "type": "MeshTimeout",
        "name": name,
        "mesh": mesh,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
        },
    }


def dataplane(name: str, service: str = "web", mesh: str = "default") -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "name": name,
        "mesh": mesh,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
        },
    }


def zone_ingress(name: str, port: int = 10001) -> dict[str, Any]:
    return {
        "type": "ZoneIngress",
        "name": name,
        "networking": {"address": "127.0.0.1", "port": port},
        "availableServices": [
            {"tags": {"kuma.io/service": "web"}, "instances": 1, "mesh": "default"}
        ],
    }


def mt_path(name: str) -> str:
    return f"/meshes/default/meshtimeouts/{name}"


def eventually(check: Any, timeout: float = 20, what: str = "") -> Any:
    return wait_until(check, timeout=timeout, interval=0.05, what=what)


def now() -> float:
    return time.monotonic()
