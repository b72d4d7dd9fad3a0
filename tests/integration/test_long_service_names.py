"""A real zone-cp refuses a service name that cannot be a VirtualIPs key (it used to accept it,
and the global then refused the zone's whole VirtualIPs), and carries a long valid one through
to its VirtualIPs in a form the global accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.kds.receive import validator
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.types import default_registry
from tests.integration.federation_support import dataplane
from tests.integration.test_zone_dns_standalone import start_zone
from tests.support import Procs, wait_until

pytestmark = [pytest.mark.integration]

FIELD = "networking.inbound[0].tags['kuma.io/service']"


def test_too_long_refused_long_valid_reaches_virtual_ips(procs: Procs, tmp_path: Path) -> None:
    _, http = start_zone(procs, tmp_path, "zone")

    status, body = http.call(
        "PUT", "/meshes/default/dataplanes/too-long", dataplane("too-long", service="s" * 300)
    )
    assert status == 400, body
    [problem] = body["invalid_parameters"]
    assert problem["field"] == FIELD and "253" in problem["reason"]

    service = "_".join(["s" * 60] * 4)  # 243 characters
    http.put("/meshes/default/dataplanes/long", dataplane("long", service=service))
    http.put("/meshes/default/dataplanes/web-1", dataplane("web-1", service="web"))

    def vips() -> list[dict[str, object]]:
        items = http.items("/meshes/default/virtualips")
        return [i for i in items if service in i["spec"]["services"]]

    [vips_doc] = wait_until(vips, timeout=15, what="the long service in VirtualIPs")
    assert "web" in vips_doc["spec"]["services"]
    # What the global checks a zone's VirtualIPs with (KDS): the whole resource passes.
    registry = default_registry()
    assert validator(registry)(resource_from_dict(vips_doc, registry)) is None
