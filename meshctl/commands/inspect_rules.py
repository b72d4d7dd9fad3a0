"""`meshctl inspect dataplane NAME`: Kuma's inspect rules view of one dataplane, from
`GET /meshes/{mesh}/dataplanes/{name}/_rules` (decision 138), at a zone or at the global.

The table has one row per rule: the policy TYPE; the TARGET it applies to (`-> SERVICE` for an
outbound, `:PORT` for an inbound, `:PORT <- TAGS` for the callers of an inbound a `from[]`
entry names, `proxy` for a top-level `default`); the ORIGIN policies, least priority first (the
last wins a conflict); and the merged CONF as compact JSON, cut to a column's width.
`-o json|yaml` prints the API's answer whole.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from meshctl.commands.common import DEFAULT_MESH
from meshctl.context import Context
from meshctl.errors import CliError
from meshctl.output import OUTPUT_FORMATS, dump_json, dump_yaml, render_table

RULES_HEADERS = ["TYPE", "TARGET", "ORIGIN", "CONF"]
CONF_CHARS = 80


def register_dataplane(
    what: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = what.add_parser(
        "dataplane",
        parents=[common],
        help="the policies that apply to one dataplane and their merged result",
        description="Per policy type, the merged conf for each outbound service, each inbound "
        "(and caller subset) and the proxy as a whole, with the policies it comes from "
        "(Kuma's inspect rules), computed by the control plane asked.",
    )
    p.add_argument("name", metavar="NAME", help="the Dataplane's name")
    p.add_argument("-m", "--mesh", default=DEFAULT_MESH, help="mesh (default: default)")
    p.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    p.set_defaults(func=run_dataplane)


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _tags(matchers: Any) -> str:
    return ",".join(f"{m.get('key')}={m.get('value')}" for m in _list(matchers))


def origin_cell(rule: Mapping[str, Any]) -> str:
    names = []
    for origin in _list(rule.get("origin")):
        meta = origin.get("resourceMeta")
        if isinstance(meta, Mapping):
            names.append(str(meta.get("displayName") or meta.get("name")))
    return ",".join(names) or "-"


def conf_cell(conf: Any, limit: int = CONF_CHARS) -> str:
    text = json.dumps(conf, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _row(type_name: str, target: str, rule: Mapping[str, Any]) -> list[str]:
    return [type_name, target, origin_cell(rule), conf_cell(rule.get("conf"))]


def rules_table(body: Mapping[str, Any]) -> str:
    rows: list[list[str]] = []
    for item in _list(body.get("rules")):
        type_name = str(item.get("type", ""))
        for rule in _list(item.get("toRules")):
            matchers = _list(rule.get("matchers"))
            service = matchers[0].get("value") if len(matchers) == 1 else _tags(matchers)
            rows.append(_row(type_name, f"-> {service}", rule))
        for key in ("fromRules", "inboundRules"):
            for per_inbound in _list(item.get(key)):
                inbound = per_inbound.get("inbound")
                port = inbound.get("port") if isinstance(inbound, Mapping) else "?"
                for rule in _list(per_inbound.get("rules")):
                    callers = _tags(rule.get("matchers"))
                    target = f":{port} <- {callers}" if callers else f":{port}"
                    rows.append(_row(type_name, target, rule))
        for rule in _list(item.get("singleItemRules")):
            rows.append(_row(type_name, "proxy", rule))
    return render_table(RULES_HEADERS, rows)


def run_dataplane(args: argparse.Namespace, ctx: Context) -> int:
    body = ctx.client().get(f"/meshes/{args.mesh}/dataplanes/{args.name}/_rules")
    if not isinstance(body, dict):
        raise CliError("unexpected answer from the _rules endpoint: not an object")
    if args.output == "json":
        ctx.stdout.write(dump_json(body))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(body))
    elif body.get("rules"):
        ctx.stdout.write(rules_table(body))
    else:
        print(f"No policy applies to dataplane {args.name} in mesh {args.mesh}.", file=ctx.stderr)
    return 0
