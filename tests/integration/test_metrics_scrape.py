"""Issue 15's metrics acceptance: after a policy change and a cross-zone call, every
component's `/metrics` (the global, both zones, zone-2's ingress, both sidecars) carries the
series the issue names, with non-zero values. Real processes: a global, two zones, an echo
`backend` in zone-2 behind its sidecar and the zone's ingress, and `web` in zone-1 calling it
by its `.mesh` name over TCP. One connection is held open while scraping so the active-
connection gauges are above zero, and each component is given one error to count (an unknown
name asked of the DNS, a non-TLS peer at the ingress and at backend's inbound)."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cross_zone_support import Mesh, allow, answered_by, dns_query
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

Samples = list[tuple[str, dict[str, str], float]]
MTP = "MeshTrafficPermission"


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    return sum(v for n, have, v in samples if n == name and labels.items() <= have.items())


def refused(address: str, port: int) -> None:
    """Sends what is not TLS and waits until the peer closes."""
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while sock.recv(4096):
            pass


def missing(samples: Samples, wanted: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [f"{n}{labels}" for n, labels in wanted if not total(samples, n, **labels) > 0]


def test_every_component_exports_its_series_after_a_policy_change_and_a_cross_zone_call(
    procs: Procs, tmp_path: Path
) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))  # the policy change
    backend = mesh.workload("zone-2", "backend-1", "backend")
    ingress = mesh.ingress("zone-2")
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])  # asks zone-1's DNS
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="a cross-zone call")
    zone1, zone2 = mesh.zones["zone-1"], mesh.zones["zone-2"]
    for zone in (zone1, zone2):
        assert dns_query(zone.dns, "backend.mesh")[0] == "NOERROR"
        assert dns_query(zone.dns, "nosuch.mesh")[0] == "NXDOMAIN"
    refused(ingress.address, ingress.port)
    refused(backend.address, backend.port)
    held = socket.create_connection((vip, port), timeout=5)  # through web, ingress, backend
    now = time.time()
    kds_ca = {"ca": "kds"}
    mesh_ca = {"ca": "mesh", "mesh": "default"}
    cert = "meshfed_ca_certificate_expiry_timestamp_seconds"
    global_series = [
        (cert, mesh_ca),
        (cert, kds_ca),
        ("meshfed_store_operation_duration_seconds_count", {"operation": "write_batch"}),
    ]
    for z in ("zone-1", "zone-2"):
        global_series += [
            ("meshfed_kds_responses_sent_total", {"zone": z, "type": MTP}),
            ("meshfed_kds_replies_received_total", {"zone": z, "type": MTP, "result": "ack"}),
            ("meshfed_kds_resources_sent_total", {"zone": z, "type": MTP, "op": "upsert"}),
            ("meshfed_kds_response_bytes_sent_total", {"zone": z, "type": MTP}),
            ("meshfed_kds_streams_started_total", {"zone": z}),
            ("meshfed_kds_propagation_seconds_count", {"zone": z, "type": MTP}),
            ("meshfed_kds_zone_connected", {"zone": z}),
            ("meshfed_kds_responses_received_total", {"zone": z, "type": "Dataplane"}),
        ]
    zone_series = [
        (cert, mesh_ca),
        (cert, kds_ca),
        ("meshfed_store_operation_duration_seconds_count", {}),
        ("meshfed_kds_responses_received_total", {"type": MTP}),
        ("meshfed_kds_replies_sent_total", {"type": MTP, "result": "ack"}),
        ("meshfed_kds_streams_started_total", {}),
        ("meshfed_kds_propagation_seconds_count", {"type": "Dataplane"}),
        ("meshfed_dns_answers_total", {"qtype": "A", "rcode": "NOERROR"}),
        ("meshfed_dns_answers_total", {"qtype": "A", "rcode": "NXDOMAIN"}),
    ]
    service = {"service": "backend"}
    ingress_series = [
        ("meshfed_ingress_connections_total", service),
        ("meshfed_ingress_active_connections", service),
        ("meshfed_ingress_sent_bytes_total", service),
        ("meshfed_ingress_received_bytes_total", service),
        ("meshfed_ingress_rejected_total", {"reason": "not_tls"}),
    ]
    web_series = [
        ("meshfed_dp_outbound_connections_total", service),
        ("meshfed_dp_outbound_active_connections", service),
        ("meshfed_dp_outbound_received_bytes_total", service),
        ("meshfed_dp_outbound_sent_bytes_total", service),
        ("meshfed_dp_upstream_connect_attempts_total", service),
        ("meshfed_dp_certificate_expiry_timestamp_seconds", {}),
    ]
    backend_series = [
        ("meshfed_dp_inbound_connections_total", service),
        ("meshfed_dp_inbound_active_connections", service),
        ("meshfed_dp_inbound_received_bytes_total", service),
        ("meshfed_dp_inbound_sent_bytes_total", service),
        ("meshfed_dp_inbound_callers_total", {**service, "verdict": "allowed"}),
        ("meshfed_dp_inbound_rejected_total", {**service, "reason": "handshake"}),
        ("meshfed_dp_certificate_expiry_timestamp_seconds", {}),
    ]
    components: dict[str, tuple[str, list[tuple[str, dict[str, str]]]]] = {
        "global": (mesh.glob.base, global_series),
        "zone-1": (zone1.http.base, zone_series),
        "zone-2": (zone2.http.base, zone_series),
        "ingress": (f"http://127.0.0.1:{ingress.admin}", ingress_series),
        "web": (f"http://127.0.0.1:{web.admin}", web_series),
        "backend": (f"http://127.0.0.1:{backend.admin}", backend_series),
    }
    try:
        for component, (url, wanted) in components.items():
            samples = _until_complete(url, wanted, component)
            for name, labels in wanted:
                if name.endswith("_expiry_timestamp_seconds"):
                    # Prometheus' convention: when, in seconds since the epoch, and ahead.
                    assert total(samples, name, **labels) > now, (component, name)
    finally:
        held.close()


def _until_complete(url: str, wanted: list[tuple[str, dict[str, str]]], what: str) -> Samples:
    last: list[str] = []

    def complete() -> Samples | None:
        samples = scrape(url)
        last[:] = missing(samples, wanted)
        return None if last else samples

    try:
        found: Samples = wait_until(complete, timeout=15, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{what}: no non-zero {last}") from exc
    return found
