"""`meshctl up` gives each zone its own DNS port and VIP range, records them in the state file,
prints how to dig, and `meshctl resolve` finds a zone's DNS through the state file; each zone
also serves Prometheus's discovery (MADS) on a port of its own, printed and recorded."""

from __future__ import annotations

import signal
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from tests.auth_support import ADMIN_TOKEN_FILE
from tests.integration.federation_support import Http, dataplane
from tests.integration.test_dns_server import dig
from tests.integration.test_mads import discovery_request, post
from tests.integration.test_up import all_running, meshctl, start_up, zones_connected
from tests.support import Procs, free_port, wait_until

pytestmark = [
    pytest.mark.integration,
]


def test_each_zone_gets_its_own_dns_port_and_vip_range(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "up"
    up = start_up(procs, data)
    comps = wait_until(
        lambda: all_running(data / "state.json"), timeout=20, what="3 running components"
    )
    z1, z2 = comps["zone-1"], comps["zone-2"]
    ports = {}
    for zone, cidr in ((z1, "127.1.0.0/16"), (z2, "127.2.0.0/16")):
        host, _, port = zone["dns"].rpartition(":")
        assert host == "127.0.0.1"
        ports[zone["name"]] = int(port)
        argv = " ".join(zone["argv"])
        assert f"--dns-address {zone['dns']}" in argv and f"--vip-cidr {cidr}" in argv
    assert ports["zone-1"] != ports["zone-2"]
    assert "global" not in [n for n, c in comps.items() if "dns" in c]
    wait_until(lambda: f"dig @127.0.0.1 -p {ports['zone-1']} backend.mesh" in up.log())
    assert f"zone-2 API {z2['api']}, DNS {z2['dns']}, Prometheus discovery {z2['mads']}" in (
        up.log()
    )
    assert z1["mads"] != z2["mads"] and f"--mads-address {z1['mads'][7:]}" in " ".join(z1["argv"])

    # The global's admin token (up starts it with --admin-token-file), which zones accept.
    token_file = Path(comps["global"]["dataDir"]) / ADMIN_TOKEN_FILE
    zone_2 = Http(int(z2["api"].rpartition(":")[2]), token_file)
    wait_until(lambda: zones_connected(comps["global"]["api"]), timeout=20, what="zones online")
    wait_until(zone_2.accepts_admin, timeout=20, what="the user-token keys in zone-2")
    ingress = {"type": "ZoneIngress", "name": "zi-2"}
    zone_2.put(
        "/zoneingresses/zi-2",
        ingress | {"networking": {"address": "127.0.0.1", "port": free_port()}},
    )
    zone_2.put("/meshes/default/dataplanes/backend-1", dataplane("backend-1", service="backend"))
    answers = {}
    for name, cidr in (("zone-1", "127.1.0.0/16"), ("zone-2", "127.2.0.0/16")):
        port = ports[name]
        answer = wait_until(
            lambda: (a := dig(port, "backend.mesh")).addresses and a,  # noqa: B023 - used now
            timeout=20,
            what=f"backend.mesh in {name}",
        )
        assert IPv4Address(answer.addresses[0]) in IPv4Network(cidr)
        answers[name] = answer.addresses[0]

    # zone-2's discovery answers kuma_sd's request (no MeshMetric: an empty list)
    status, body = post(int(z2["mads"].rpartition(":")[2]), discovery_request("prom", ""))
    assert status == 200 and b"MonitoringAssignment" in body

    resolved = meshctl("resolve", "backend.mesh", "--zone", "zone-1", "--data-dir", str(data))
    assert resolved.returncode == 0, resolved.stderr
    assert answers["zone-1"] in resolved.stdout
    assert "served by zone-2 (1 instance)" in resolved.stdout
    up.signal(signal.SIGTERM)
    assert up.popen.wait(20) == 0
