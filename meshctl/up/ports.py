"""Which loopback ports the components listen on, remembered per data directory.

The global's API and KDS prefer Kuma's defaults (5681, 5685) at every start when they are free:
a fallback port taken once because 5681 was busy must not stick, or `meshctl` (which looks at
5681 by default) would miss the global forever after. Other ports are remembered per data
directory, so a later `meshctl up` takes the same zone ports again when they are free. An
explicit `--base-port` lays ports out from that base instead (global API, global KDS, then one
API per zone) and fails clearly when one is taken.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"
GLOBAL_API = "global.api"
GLOBAL_KDS = "global.kds"


class PortError(Exception):
    """No usable port; the message names the port, its purpose and what to do."""


def zone_api_key(zone: str) -> str:
    return f"{zone}.api"


def zone_dns_key(zone: str) -> str:
    return f"{zone}.dns"


def zone_dp_key(zone: str) -> str:
    """A zone's dataplane config server (sidecars and ingresses connect to it)."""
    return f"{zone}.dp"


def zone_mads_key(zone: str) -> str:
    """A zone's Prometheus discovery (kuma_sd's MADS; public like its DNS, decision 162)."""
    return f"{zone}.mads"


def zone_names(count: int) -> list[str]:
    return [f"zone-{i}" for i in range(1, count + 1)]


def port_keys(zones: Sequence[str]) -> list[str]:
    """Every port the deployment needs, in `--base-port` layout order (ports added later go
    last, so the API and DNS ports keep the places they had before)."""
    return [
        GLOBAL_API,
        GLOBAL_KDS,
        *(zone_api_key(z) for z in zones),
        *(zone_dns_key(z) for z in zones),
        *(zone_dp_key(z) for z in zones),
        *(zone_mads_key(z) for z in zones),
    ]


def describe(key: str) -> str:
    name, _, what = key.partition(".")
    return f"{name} {what.upper()}"


def choose_ports(
    keys: Sequence[str],
    remembered: Mapping[str, int],
    base: int,
    is_free: Callable[[int], bool],
    pick_free: Callable[[set[int]], int],
    preferred: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """A port per key: base + position when `base` > 0, else the preferred one (Kuma's
    defaults for the global, so `meshctl` finds the API without being told) when free, else
    the remembered port when still free, else any free port. No two keys share a port."""
    chosen: dict[str, int] = {}
    if base:
        if base + len(keys) - 1 > 65535:
            raise PortError(f"--base-port {base} leaves no room for {len(keys)} ports")
        for i, key in enumerate(keys):
            port = base + i
            if not is_free(port):
                raise PortError(
                    f"port {port} ({describe(key)}) is in use; pick another --base-port, "
                    "or 0 for any free ports"
                )
            chosen[key] = port
        return chosen
    taken: set[int] = set()
    for key in keys:
        for candidate in ((preferred or {}).get(key), remembered.get(key)):
            if candidate and candidate not in taken and is_free(candidate):
                port = candidate
                break
        else:
            port = pick_free(taken)
        chosen[key] = port
        taken.add(port)
    return chosen


def read_remembered(path: Path) -> dict[str, int]:
    """Ports of the previous run; a missing or damaged file just means none are remembered."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): v
        for k, v in data.items()
        if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65535
    }


def write_remembered(path: Path, ports: Mapping[str, int]) -> None:
    path.write_text(json.dumps(dict(ports), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def tcp_port_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on host:port now. SO_REUSEADDR as the servers set it, so
    connections of a previous run lingering in TIME_WAIT do not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(taken: set[int], host: str = HOST) -> int:
    """A port the kernel hands out as free, not already given to another component."""
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
            contextlib.suppress(OSError),
        ):
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in taken:
                return port
    raise PortError(f"found no free port on {host}")
