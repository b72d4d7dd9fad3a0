"""The registration's pure decisions: which proxy may take over a connected one's name, and
which proxies the crash sweep must leave alone."""

from __future__ import annotations

from tests.unit.mesh_control.dpsession_factories import ingress, sidecar, web_dataplane
from zone_cp import dpstate
from zone_cp.dpregistration import live_proxies, takeover_refusal


def test_the_same_proxy_again_takes_over_whatever_its_health() -> None:
    current = sidecar()
    again = dpstate.with_health(web_dataplane(), {0: True, 1: False}, default=False)
    assert takeover_refusal(current, again) is None


def test_another_dataplane_with_the_same_name_is_refused() -> None:
    refusal = takeover_refusal(sidecar(), web_dataplane(port=8081))
    assert refusal == (
        "dataplane web-1 (mesh default) is connected with a different Dataplane; "
        "give this proxy another name"
    )


def test_the_sweep_spares_connected_sidecars_and_ingresses() -> None:
    live, ingresses = live_proxies([sidecar("a"), sidecar("b"), ingress("zi-1")])
    assert live == {("default", "a"), ("default", "b")}
    assert ingresses == {"zi-1"}
