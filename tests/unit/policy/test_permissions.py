"""MeshTrafficPermission compiled per inbound and evaluated per caller: Kuma's documented
examples and the edge cases that decide who gets in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.policy.permissions import Action, Permissions, compile_permissions
from meshfed.policy.rules import match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import MESH_REF, dataplane, frm, inbound, mtp, subset, svc

PAYMENTS = dataplane(
    "payments-1",
    inbound("payments", 8080, name="api"),
    inbound("payments-admin", 9000, name="admin"),
    labels={"app": "payments"},
)
ORDERS = "spiffe://default/orders"
WEB = "spiffe://default/web"


def perms(*policies: Resource, inbound: int = 0, mtls: bool = True) -> Permissions:
    matched = match(policies, view_of(PAYMENTS, "zone-1"))
    return compile_permissions(matched, inbound, "default", mtls_enabled=mtls)


def action(p: Permissions, caller: str | None) -> Action:
    return p.evaluate(caller).action


# --- Kuma's documented examples --------------------------------------------------------------


ALLOW_ORDERS = mtp(
    "allow-orders", svc("payments"), from_=[frm(subset({"kuma.io/service": "orders"}), "Allow")]
)
ALLOW_ORDERS_LEGACY = mtp(
    "allow-orders-legacy", svc("payments"), from_=[frm(svc("orders"), "Allow")]
)
DENY_ALL = mtp("deny-all", MESH_REF, from_=[frm(MESH_REF, "Deny")])
ALLOW_ALL = mtp("allow-all", MESH_REF, from_=[frm(MESH_REF, "Allow")])


@pytest.mark.parametrize("allow_orders", [ALLOW_ORDERS, ALLOW_ORDERS_LEGACY])
def test_payments_allows_orders_and_nobody_else(allow_orders: Resource) -> None:
    p = perms(allow_orders)
    assert action(p, ORDERS) is Action.ALLOW
    assert action(p, WEB) is Action.DENY  # default deny with mTLS on
    assert action(p, None) is Action.DENY
    assert p.sources == (f"MeshTrafficPermission/{allow_orders.meta.name}",)


def test_the_policy_only_applies_to_the_inbounds_it_targets() -> None:
    admin = perms(ALLOW_ORDERS, inbound=1)
    assert action(admin, ORDERS) is Action.DENY
    assert admin.sources == ()


def test_deny_all_and_allow_all() -> None:
    assert action(perms(DENY_ALL), ORDERS) is Action.DENY
    allow = perms(ALLOW_ALL)
    assert action(allow, ORDERS) is Action.ALLOW
    assert action(allow, "spiffe://default/anything-else") is Action.ALLOW
    # "All clients within the mesh": another trust domain is not one of them.
    assert action(allow, "spiffe://other/orders") is Action.DENY


def test_a_named_caller_overrides_a_mesh_wide_deny() -> None:
    p = perms(DENY_ALL, ALLOW_ORDERS)
    assert action(p, ORDERS) is Action.ALLOW
    assert action(p, WEB) is Action.DENY


def test_a_deny_on_a_subset_overrides_an_allow_on_mesh() -> None:
    # Even when the mesh-wide allow sits in a more specific policy: the caller selection is
    # the first criterion of the merge order.
    broad = mtp("payments-open", svc("payments"), from_=[frm(MESH_REF, "Allow")])
    deny_web = mtp("no-web", MESH_REF, from_=[frm(subset({"kuma.io/service": "web"}), "Deny")])
    p = perms(broad, deny_web)
    assert action(p, WEB) is Action.DENY
    assert action(p, ORDERS) is Action.ALLOW


def test_most_specific_caller_selector_wins() -> None:
    p = perms(
        mtp(
            "layers",
            MESH_REF,
            from_=[
                frm({"kind": "MeshServiceSubset", "name": "web"}, "Allow"),
                frm(svc("web"), "Deny"),
                frm(subset({}), "Deny"),
                frm(MESH_REF, "Allow"),
            ],
        )
    )
    # Mesh < MeshSubset < MeshService < MeshServiceSubset, whatever the order in the list.
    assert action(p, WEB) is Action.ALLOW
    assert action(p, ORDERS) is Action.DENY  # MeshSubset without tags beats Mesh


def test_equal_selectors_more_specific_policy_wins_then_name() -> None:
    mesh_level = mtp("mesh-level", MESH_REF, from_=[frm(svc("web"), "Deny")])
    dp_level = mtp(
        "dp-level",
        {"kind": "Dataplane", "labels": {"app": "payments"}},
        from_=[frm(svc("web"), "Allow")],
    )
    assert action(perms(mesh_level, dp_level), WEB) is Action.ALLOW
    a = mtp("aaa", MESH_REF, from_=[frm(svc("web"), "Allow")])
    z = mtp("zzz", MESH_REF, from_=[frm(svc("web"), "Deny")])
    assert action(perms(a, z), WEB) is Action.ALLOW  # "aaa" has priority over "zzz"
    # Within one policy, the later of two equal entries wins.
    twice = mtp("twice", MESH_REF, from_=[frm(svc("web"), "Allow"), frm(svc("web"), "Deny")])
    assert action(perms(twice), WEB) is Action.DENY


def test_several_policies_merge_into_one_table() -> None:
    p = perms(
        DENY_ALL,
        ALLOW_ORDERS,
        mtp("web-shadow", svc("payments"), from_=[frm(svc("web"), "AllowWithShadowDeny")]),
    )
    assert p.default is Action.DENY
    assert dict(p.services) == {"orders": Action.ALLOW, "web": Action.ALLOW_WITH_SHADOW_DENY}
    verdict = p.evaluate(WEB)
    assert verdict.allowed and verdict.shadow_denied
    assert set(p.sources) == {
        "MeshTrafficPermission/deny-all",
        "MeshTrafficPermission/allow-orders",
        "MeshTrafficPermission/web-shadow",
    }


def test_callers_named_by_tags_need_tags_in_their_certificate() -> None:
    # decision 152: a caller's tags come from its certificate's kuma:// URI SANs
    p = perms(
        mtp(
            "tags",
            MESH_REF,
            from_=[
                frm(subset({"env": "dev"}), "Allow"),
                frm(
                    {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}}, "Allow"
                ),
                frm(subset({"kuma.io/service": "orders", "env": "prod"}), "Allow"),
                frm(
                    {"kind": "MeshServiceSubset", "name": "web", "tags": {"kuma.io/service": "x"}},
                    "Allow",
                ),
            ],
        )
    )
    # None of these entries selects a certificate that names only a service.
    assert action(p, WEB) is Action.DENY
    assert action(p, ORDERS) is Action.DENY
    # (the last entry names two services: it selects nobody)
    assert p.default is None and not p.services and len(p.tagged) == 3
    assert p.evaluate(WEB, frozenset({("version", "v1")})).action is Action.ALLOW
    assert p.evaluate(ORDERS, frozenset({("env", "prod")})).action is Action.ALLOW
    assert p.evaluate(ORDERS, frozenset({("env", "dev")})).action is Action.ALLOW
    assert p.evaluate(WEB, frozenset({("version", "v2")})).action is Action.DENY


def test_mtls_off_lets_everything_in() -> None:
    p = perms(DENY_ALL, mtls=False)
    assert not p.enforced
    assert action(p, None) is Action.ALLOW
    assert p.evaluate(WEB).reason.startswith("mTLS is off")


@pytest.mark.parametrize(
    "caller",
    [
        "",
        "not-a-uri",
        "spiffe://default",
        "spiffe://default/a/b",
        "spiffe://default/%zz",
        "x" * 5000,
    ],
)
def test_odd_caller_ids_are_denied_not_crashed(caller: str) -> None:
    assert action(perms(ALLOW_ALL), caller) is Action.DENY


# --- the rules form (SPIFFE ID matchers) ----------------------------------------------------


def match_(kind: str, value: str) -> dict[str, Any]:
    return {"spiffeID": {"type": kind, "value": value}}


def test_rules_deny_wins_over_allow() -> None:
    p = perms(
        mtp(
            "exclude-legacy",
            MESH_REF,
            rules=[
                {
                    "default": {
                        "deny": [match_("Prefix", "spiffe://default/legacy")],
                        "allow": [match_("Prefix", "spiffe://default/")],
                    }
                }
            ],
        )
    )
    assert action(p, WEB) is Action.ALLOW
    assert action(p, "spiffe://default/legacy-billing") is Action.DENY
    assert action(p, "spiffe://other/web") is Action.DENY


def test_rules_shadow_deny_is_allowed_and_flagged() -> None:
    # Kuma's "test a deny rule before enforcing it" example, in meshfed's identities.
    p = perms(
        mtp(
            "shadow-deny-legacy",
            {"kind": "Dataplane", "labels": {"app": "payments"}},
            rules=[
                {
                    "default": {
                        "allowWithShadowDeny": [match_("Exact", "spiffe://default/legacy")],
                        "allow": [match_("Prefix", "spiffe://default/")],
                    }
                }
            ],
        )
    )
    legacy = p.evaluate("spiffe://default/legacy")
    assert legacy.action is Action.ALLOW_WITH_SHADOW_DENY and legacy.allowed
    assert action(p, "spiffe://default/legacy2") is Action.ALLOW
    assert action(p, WEB) is Action.ALLOW


def test_rules_of_several_policies_are_concatenated_and_deny_cannot_be_overridden() -> None:
    platform = mtp("platform", MESH_REF, rules=[{"default": {"deny": [match_("Exact", WEB)]}}])
    owner = mtp(
        "owner",
        {"kind": "Dataplane", "name": "payments-1"},
        rules=[{"default": {"allow": [match_("Exact", WEB), match_("Exact", ORDERS)]}}],
    )
    p = perms(platform, owner)
    assert action(p, WEB) is Action.DENY
    assert action(p, ORDERS) is Action.ALLOW


def test_rules_are_checked_before_from_entries() -> None:
    p = perms(
        ALLOW_ALL, mtp("no-web", MESH_REF, rules=[{"default": {"deny": [match_("Exact", WEB)]}}])
    )
    assert action(p, WEB) is Action.DENY
    assert action(p, ORDERS) is Action.ALLOW
    q = perms(
        DENY_ALL, mtp("web-ok", MESH_REF, rules=[{"default": {"allow": [match_("Exact", WEB)]}}])
    )
    assert action(q, WEB) is Action.ALLOW
    assert action(q, ORDERS) is Action.DENY


def test_rules_and_section_name_target_one_inbound() -> None:
    admin_only = mtp(
        "admin-ops",
        {"kind": "Dataplane", "labels": {"app": "payments"}, "sectionName": "admin"},
        rules=[{"default": {"allow": [match_("Exact", "spiffe://default/ops")]}}],
    )
    assert action(perms(admin_only, inbound=1), "spiffe://default/ops") is Action.ALLOW
    assert action(perms(admin_only, inbound=0), "spiffe://default/ops") is Action.DENY


def test_percent_encoded_service_names_match_their_service() -> None:
    p = perms(mtp("odd", MESH_REF, from_=[frm(svc("web_ns_svc_80"), "Allow")]))
    assert action(p, "spiffe://default/web_ns_svc_80") is Action.ALLOW
    q = perms(mtp("colon", MESH_REF, from_=[frm(subset({"kuma.io/service": "web:80"}), "Allow")]))
    assert action(q, "spiffe://default/web%3A80") is Action.ALLOW


@settings(max_examples=300, deadline=None)
@given(
    caller=st.one_of(
        st.text(max_size=40), st.text(max_size=20).map(lambda s: f"spiffe://default/{s}")
    )
)
def test_any_caller_string_gets_a_verdict(caller: str) -> None:
    p = perms(
        DENY_ALL,
        ALLOW_ORDERS,
        mtp("r", MESH_REF, rules=[{"default": {"deny": [match_("Prefix", "spiffe://default/x")]}}]),
    )
    verdict = p.evaluate(caller)
    assert verdict.reason
    # Only `orders` is allowed, and only under its canonical ID.
    assert verdict.allowed == (caller == ORDERS)
