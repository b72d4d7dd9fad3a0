"""Callers named by any tag in `from[]` (decision 152): which tags a certificate may carry,
how entries select a caller by them, and the compiled MeshTrafficPermission and
MeshFaultInjection the sidecar folds per caller, equal to Kuma's merge for every caller."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.dpconfig.traffic import Abort, HttpFault
from meshfed.dpconfig.traffic_rules import compile_faults
from meshfed.pki.tag_sans import TagSet
from meshfed.policy.callers import certified_tags, selects
from meshfed.policy.permissions import Action, Permissions, compile_permissions
from meshfed.policy.rules import inbound_conf, match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import (
    MESH,
    MESH_REF,
    dataplane,
    frm,
    inbound,
    mtp,
    policy,
    subset,
    svc,
)

BACKEND = view_of(dataplane("backend-1", inbound("backend", 8080, name="api")), "zone-1")
WEB = "spiffe://default/web"
V1: TagSet = frozenset({("version", "v1"), ("kuma.io/zone", "zone-1")})
V2: TagSet = frozenset({("version", "v2"), ("kuma.io/zone", "zone-1")})


def perms(*policies: Resource) -> Permissions:
    return compile_permissions(match(policies, BACKEND), 0, MESH, mtls_enabled=True)


def sss(name: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"kind": "MeshServiceSubset", "name": name, "tags": tags}


# --- what a certificate may say --------------------------------------------------------------


def test_a_certificate_carries_the_registered_tags_of_its_service_and_its_zone() -> None:
    dp = view_of(
        dataplane(
            "web-1",
            inbound("web", 8080, tags={"version": "v2", "env": "prod"}),
            inbound("web", 8081, tags={"version": "v3"}),
            inbound("web-admin", 9000, tags={"role": "admin"}),  # another service: not its tags
        ),
        "zone-1",
    )
    assert certified_tags(dp, "web", "zone-1") == {
        ("version", "v2"),
        ("version", "v3"),
        ("env", "prod"),
        ("kuma.io/zone", "zone-1"),
    }


def test_a_dataplane_cannot_claim_another_zone() -> None:
    dp = view_of(dataplane("web-1", inbound("web", 8080, tags={"kuma.io/zone": "us-east"})), "z1")
    assert certified_tags(dp, "web", "zone-1") == {("kuma.io/zone", "zone-1")}


def test_selects_needs_every_tag_and_the_service_from_the_identity() -> None:
    assert selects({}, None, frozenset())
    assert selects({"version": "v2"}, "web", V2)
    assert not selects({"version": "v2"}, "web", V1)
    assert not selects({"version": "v2"}, "web", frozenset())  # no tag SANs: no tag rule
    assert selects({"kuma.io/service": "web", "version": "v2"}, "web", V2)
    assert not selects({"kuma.io/service": "web"}, "orders", V2)
    # the service is never read from the tags
    assert not selects({"kuma.io/service": "web"}, None, frozenset({("kuma.io/service", "web")}))


# --- MeshTrafficPermission -------------------------------------------------------------------


def test_only_version_v2_of_a_service_gets_in() -> None:
    p = perms(mtp("v2-only", svc("backend"), from_=[frm(sss("web", {"version": "v2"}), "Allow")]))
    assert p.evaluate(WEB, V2).action is Action.ALLOW
    assert p.evaluate(WEB, V1).action is Action.DENY
    assert p.evaluate(WEB).action is Action.DENY  # a certificate without tag SANs
    assert p.evaluate("spiffe://default/orders", V2).action is Action.DENY
    assert p.evaluate("spiffe://other/web", V2).action is Action.DENY
    assert p.sources == ("MeshTrafficPermission/v2-only",)


def test_kumas_zone_allow_env_deny_example() -> None:
    # kuma.io/docs/2.14.x/policies/meshtrafficpermission/, "Allow requests from zone
    # 'us-east', deny requests from 'dev' environment"
    p = perms(
        mtp(
            "example-with-tags",
            from_=[
                frm(subset({"kuma.io/zone": "us-east"}), "Allow"),
                frm(subset({"env": "dev"}), "Deny"),
            ],
        )
    )
    east = frozenset({("kuma.io/zone", "us-east")})
    assert p.evaluate(WEB, east).action is Action.ALLOW
    assert p.evaluate(WEB, east | {("env", "dev")}).action is Action.DENY
    assert p.evaluate(WEB, frozenset({("env", "prod"), ("kuma.io/zone", "eu")})).action is (
        Action.DENY
    )


def test_narrower_caller_selection_wins_whichever_policy_holds_it() -> None:
    # Mesh < MeshSubset < MeshService < MeshServiceSubset
    p = perms(
        mtp("open", svc("backend"), from_=[frm(MESH_REF, "Allow")]),
        mtp(
            "layers",
            from_=[
                frm(sss("web", {"version": "v1"}), "Allow"),
                frm(svc("web"), "Deny"),
                frm(subset({"env": "dev"}), "AllowWithShadowDeny"),
            ],
        ),
    )
    assert p.evaluate(WEB, V1).action is Action.ALLOW
    assert p.evaluate(WEB, V2 | {("env", "dev")}).action is Action.DENY
    assert p.evaluate("spiffe://default/orders", frozenset({("env", "dev")})).action is (
        Action.ALLOW_WITH_SHADOW_DENY
    )
    assert p.evaluate("spiffe://default/orders").action is Action.ALLOW


def test_rules_still_come_first() -> None:
    deny_web = {"deny": [{"spiffeID": {"type": "Exact", "value": WEB}}]}
    p = perms(
        mtp("tags", from_=[frm(subset({"version": "v2"}), "Allow")]),
        mtp("rules", rules=[{"default": deny_web}]),
    )
    assert p.evaluate(WEB, V2).action is Action.DENY
    assert p.evaluate("spiffe://default/orders", V2).action is Action.ALLOW
    assert p.sources == ("MeshTrafficPermission/tags", "MeshTrafficPermission/rules")


# For any set of entries and any caller, the sidecar's fold equals Kuma's merge of the
# entries selecting the caller (rules.inbound_conf) with a single-valued tag set.
REFS = st.sampled_from(
    [
        MESH_REF,
        svc("web"),
        svc("orders"),
        subset({}),
        subset({"version": "v1"}),
        subset({"version": "v2", "env": "dev"}),
        subset({"kuma.io/service": "web", "env": "dev"}),
        sss("web", {"version": "v2"}),
        sss("orders", {"env": "dev"}),
    ]
)
ENTRIES = st.lists(
    st.tuples(REFS, st.sampled_from(["Allow", "Deny", "AllowWithShadowDeny"])),
    min_size=1,
    max_size=6,
)
CALLERS = st.tuples(
    st.sampled_from(["web", "orders"]),
    st.fixed_dictionaries(
        {}, optional={"version": st.sampled_from(["v1", "v2"]), "env": st.just("dev")}
    ),
)


@settings(max_examples=150, deadline=None)
@given(ENTRIES, ENTRIES, CALLERS)
def test_the_fold_equals_kumas_merge(
    a: list[tuple[dict[str, Any], str]],
    b: list[tuple[dict[str, Any], str]],
    caller: tuple[str, dict[str, str]],
) -> None:
    policies = [
        mtp("aaa", from_=[frm(ref, act) for ref, act in a]),
        mtp("bbb", svc("backend"), from_=[frm(ref, act) for ref, act in b]),
    ]
    service, tags = caller
    merged = inbound_conf(match(policies, BACKEND), 0, {"kuma.io/service": service, **tags})
    want = Action(merged.conf["action"]) if merged.conf else Action.DENY
    got = perms(*policies).evaluate(f"spiffe://default/{service}", frozenset(tags.items()))
    assert got.action is want


# --- MeshFaultInjection ----------------------------------------------------------------------


def test_faults_for_callers_by_tags() -> None:
    def fault(status: int) -> dict[str, Any]:
        return {"abort": {"httpStatus": status, "percentage": 100}}

    fi = policy(
        "MeshFaultInjection",
        "v1-faults",
        svc("backend"),
        from_=[
            {"targetRef": MESH_REF, "default": {"http": [fault(500)]}},
            {"targetRef": sss("web", {"version": "v1"}), "default": {"http": [fault(503)]}},
        ],
    )
    got = compile_faults(match([fi], BACKEND), 0, MESH)
    assert got.sources == ("MeshFaultInjection/v1-faults",)
    assert got.for_caller(WEB, V1) == (HttpFault(abort=Abort(503, 100.0)),)
    assert got.for_caller(WEB, V2) == (HttpFault(abort=Abort(500, 100.0)),)
    assert got.for_caller(None) == (HttpFault(abort=Abort(500, 100.0)),)  # mTLS off: Mesh
