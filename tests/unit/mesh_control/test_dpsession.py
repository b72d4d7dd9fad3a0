"""A proxy's answers change only its session: ACKs and NACKs are counted in its subscription,
reports give the inbounds' readiness (a sidecar's; an ingress has none)."""

from __future__ import annotations

from meshfed._gen import dataplane_pb2 as pb
from tests.unit.mesh_control.dpsession_factories import ingress, sidecar


def test_an_ack_records_the_applied_version() -> None:
    session = sidecar()
    session.acked("v1")
    sub = session.subscription
    assert (sub.responses_acked, sub.config_acked) == (1, "v1")
    assert sub.last_update_time is not None
    assert session.insight_dirty


def test_a_nack_records_a_bounded_reason() -> None:
    session = sidecar()
    session.rejected("x" * 5000)
    sub = session.subscription
    assert sub.responses_rejected == 1
    assert sub.last_nack_error == "x" * 1000
    assert session.insight_dirty


def test_a_report_gives_readiness_by_inbound_keeping_unreported_ones() -> None:
    session = sidecar()
    session.ready = {0: False, 1: True}
    report = pb.Report(inbounds=[pb.InboundStatus(port=8080, ready=True)])
    assert session.reported(report) == {0: True, 1: True}
    assert session.report is report
    assert session.insight_dirty
    assert session.ready == {0: False, 1: True}  # stored first, then kept by the caller


def test_an_ingress_report_changes_no_readiness() -> None:
    session = ingress()
    assert session.reported(pb.Report()) == session.ready
    assert session.insight_dirty
