"""Typed reads of stored bodies (meshfed/resources/typed.py): parsed once per Resource, again
when its spec is replaced, None when the structure does not fit; `read_stored` gives the same
object as a full validation for a valid body, conversions included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from meshfed.resources.model import Meta, Resource
from meshfed.resources.models.base import read_stored
from meshfed.resources.models.mesh import MeshSpec
from meshfed.resources.models.proxies import DataplaneSpec
from meshfed.resources.typed import spec_as


def dataplane_body(**inbound: Any) -> dict[str, Any]:
    first = {"port": 18080, "tags": {"kuma.io/service": "backend"}, **inbound}
    return {"networking": {"address": "127.0.0.2", "inbound": [first]}}


MESH_BODY = {
    "mtls": {
        "enabledBackend": "ca-1",
        "backends": [
            {
                "name": "ca-1",
                "type": "builtin",
                "dpCert": {"rotation": {"expiration": "1h"}},
                "conf": {"caCert": {"RSAbits": 2048, "expiration": "10y"}},
            }
        ],
    }
}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (DataplaneSpec, dataplane_body(servicePort=8080, health={"ready": False})),
        (DataplaneSpec, dataplane_body(address=None, serviceAddress="10.0.0.1")),
        (MeshSpec, MESH_BODY),
    ],
)
def test_a_stored_body_reads_as_a_full_validation_does(model: Any, body: dict[str, Any]) -> None:
    assert read_stored(model, body) == model.model_validate(body)


def test_conversions_and_nested_models_are_kept() -> None:
    mesh = read_stored(MeshSpec, MESH_BODY)
    assert mesh.mtls is not None and mesh.mtls.backends is not None
    backend = mesh.mtls.backends[0]
    assert backend.dp_cert is not None and backend.dp_cert.rotation is not None
    assert backend.dp_cert.rotation.expiration == timedelta(hours=1)


def test_meshfeds_own_checks_are_left_to_the_edge_but_structure_is_not() -> None:
    # A service name the API refuses (too long for a DNS label) was refused where it entered.
    long_name = dataplane_body(tags={"kuma.io/service": "a" * 70})
    with pytest.raises(ValidationError):
        DataplaneSpec.model_validate(long_name)
    assert read_stored(DataplaneSpec, long_name).networking.inbound is not None
    # A wrong type or an unknown field is still a mismatch.
    for body in (dataplane_body(port="18080"), dataplane_body(extra=1)):
        with pytest.raises(ValidationError):
            read_stored(DataplaneSpec, body)


def test_parsed_once_per_resource_and_again_when_its_spec_is_replaced() -> None:
    res = Resource("Dataplane", Meta("dp-1", "default"), dataplane_body())
    first = spec_as(res, DataplaneSpec)
    assert first is not None and spec_as(res, DataplaneSpec) is first
    res.spec = dataplane_body(port=9000)
    second = spec_as(res, DataplaneSpec)
    assert second is not None and second is not first
    assert second.networking.inbound is not None and second.networking.inbound[0].port == 9000
    # Not part of the value, and a clone starts without it.
    assert res == Resource("Dataplane", Meta("dp-1", "default"), dataplane_body(port=9000))
    assert res.clone().typed_cache is None


def test_a_body_that_does_not_fit_reads_as_none(caplog: pytest.LogCaptureFixture) -> None:
    res = Resource("Dataplane", Meta("dp-1", "default"), {"networking": {"inbound": "x"}})
    assert spec_as(res, DataplaneSpec) is None
    assert spec_as(res, DataplaneSpec) is None
    assert len([r for r in caplog.records if "does not fit" in r.message]) == 1
