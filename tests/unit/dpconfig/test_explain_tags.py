"""`_explain` evaluates a permission naming callers by tags with the tags the caller's
certificate carries (decision 152), and names the entry that decides."""

from __future__ import annotations

from meshfed.dpconfig.explain import explain
from meshfed.resources.model import Resource
from tests.unit.dpconfig.test_explain import BACKENDS, Z1, hop, inventory
from tests.unit.policy.factories import dataplane, frm, inbound, mtp, svc

V2_ONLY = mtp(
    "web-v2",
    svc("backend"),
    from_=[frm({"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v2"}}, "Allow")],
)


def web(version: str) -> Resource:
    return dataplane(
        "web-1",
        inbound("web", 18080, servicePort=8080, tags={"version": version}),
        address="127.0.1.10",
        labels={"kuma.io/zone": Z1},
    )


def test_a_caller_tagged_v2_is_allowed_and_v1_denied() -> None:
    policies = {"MeshTrafficPermission": [V2_ONLY]}
    v2 = explain(inventory(dataplanes=[web("v2"), *BACKENDS], policies=policies), "web", "backend")
    assert "MeshTrafficPermission/web-v2 (from MeshServiceSubset: Allow)" in hop(v2, "permission")
    v1 = explain(inventory(dataplanes=[web("v1"), *BACKENDS], policies=policies), "web", "backend")
    assert v1.broken is not None and v1.broken.name == "permission"
