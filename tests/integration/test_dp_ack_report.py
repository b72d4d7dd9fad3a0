"""A real mesh-dp sends the report that follows each config inside that config's ACK, and a
real zone-cp takes it as the report (issue 19, Config.ack_report; real processes: a
global-cp, one zone-cp, an echo application and its sidecar over the config stream).

The older halves of the protocol are tested against the other side in process: a zone that
does not set `ack_report` gets an ACK and a Report of their own (tests/unit/proxy/
test_cpclient.py), and a proxy that sends them apart still has its report read
(tests/unit/mesh_control/test_dpserver.py)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import Mesh
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"


def dp_counter(mesh: Mesh, name: str) -> float:
    """The zone's `meshfed_dp_server_<name>_total` from its /metrics."""
    http = mesh.zones[ZONE].http
    req = urllib.request.Request(http.base + "/metrics", headers=http.headers())
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    found = re.search(rf"^meshfed_dp_server_{name}_total (\S+)$", text, re.MULTILINE)
    assert found is not None, f"meshfed_dp_server_{name}_total not in the zone's /metrics"
    return float(found.group(1))


def test_the_sidecar_reports_inside_its_acks(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path, zone_names=(ZONE,))
    mesh.workload(ZONE, "backend-1", "backend")

    def instances() -> int:
        service = mesh.zones[ZONE].service("backend")
        return int(service["instances"]) if service else 0

    # Ready in the zone's catalog: the readiness came in a report, which came in an ACK.
    wait_until(instances, timeout=20, what="backend ready in the zone's catalog")

    def every_ack_carried_its_report() -> bool:
        in_acks = dp_counter(mesh, "reports_in_acks")  # read first: ACKs only grow after
        return in_acks >= 1 and dp_counter(mesh, "acks") == in_acks

    wait_until(every_ack_carried_its_report, timeout=10, what="each ACK with its report")
    # The periodic reports, if one came meanwhile, are messages of their own.
    assert dp_counter(mesh, "reports") >= dp_counter(mesh, "reports_in_acks")
