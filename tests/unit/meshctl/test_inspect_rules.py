"""`meshctl inspect dataplane NAME`: the `_rules` answer as a table, one row per rule."""

from __future__ import annotations

from meshctl.commands.inspect_rules import conf_cell, rules_table
from meshfed.dpconfig.rules_view import dataplane_rules
from tests.unit.dpconfig.test_rules_view import SERVICES, WEB, timeout
from tests.unit.meshctl.test_up_inspect import parse_table
from tests.unit.policy.factories import MESH_REF, frm, mtp, policy, svc


def test_each_rule_is_a_row_naming_its_target_origin_and_conf() -> None:
    policies = {
        "MeshTimeout": [
            timeout("mesh-wide", MESH_REF, {"idleTimeout": "20s"}),
            timeout("for-backend", svc("backend"), {"idleTimeout": "5s"}),
            policy("MeshTimeout", "in", MESH_REF, rules=[{"default": {"idleTimeout": "1s"}}]),
        ],
        "MeshTrafficPermission": [mtp("deny-db", MESH_REF, from_=[frm(svc("db"), "Deny")])],
    }
    body = {"rules": dataplane_rules(WEB, "zone-1", policies, SERVICES)}
    rows = [list(r.values()) for r in parse_table(rules_table(body))]
    assert rows == [
        ["MeshTimeout", "-> backend", "mesh-wide,for-backend", '{"idleTimeout":"5s"}'],
        ["MeshTimeout", "-> db", "mesh-wide", '{"idleTimeout":"20s"}'],
        ["MeshTimeout", ":8080", "in", '{"idleTimeout":"1s"}'],
        ["MeshTrafficPermission", ":8080 <- kuma.io/service=db", "deny-db", '{"action":"Deny"}'],
    ]


def test_a_long_conf_is_cut_to_the_column() -> None:
    cell = conf_cell({"k": "x" * 200}, limit=20)
    assert len(cell) == 20 and cell.endswith("...")
    assert conf_cell({}) == "{}"
