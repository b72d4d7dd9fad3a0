"""`meshctl explain --from web --to backend [--zone Z] [--mesh M]`: why a call passes or not.

Asks `GET /meshes/{mesh}/_explain` (the global explains a call from any zone, a zone-cp from
its own) and prints each hop of the call with its verdict: ✓ passes, ! passes in part, ✗ the
call cannot pass, - not checked (an earlier hop is missing). Exits 1 when a hop breaks,
naming the first one, so scripts can wait for a path to work.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from meshctl.commands.common import DEFAULT_MESH
from meshctl.context import Context
from meshctl.errors import EXIT_FAILED, CliError
from meshctl.output import dump_json, dump_yaml, render_table

MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="why a service can or cannot reach another, hop by hop",
        description="Walk a call from service --from to <--to>.mesh as the control planes "
        "see it: the caller's sidecar, the service's instances and ingresses, DNS and VIP, "
        "the outbound, MeshTrafficPermission and the policies shaping the call. Exits 1 and "
        "names the first broken hop when the call cannot pass.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="SERVICE", help="caller")
    p.add_argument("--to", dest="destination", required=True, metavar="SERVICE", help="callee")
    p.add_argument(
        "--zone",
        metavar="ZONE",
        help="the caller's zone (default: the zone asked, or the first zone where it runs)",
    )
    p.add_argument("-m", "--mesh", default=DEFAULT_MESH, help="mesh (default: default)")
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    p.set_defaults(func=run)


def render(body: dict[str, Any]) -> str:
    """The explanation as a table, with a line naming the first broken hop."""
    zone = body.get("zone") or "?"
    head = f"{body.get('from')} ({zone}) -> {body.get('to')}.mesh, mesh {body.get('mesh')}\n"
    rows = [
        [str(h.get("hop")), MARKS.get(str(h.get("verdict")), "?"), str(h.get("detail"))]
        for h in body.get("hops", [])
        if isinstance(h, dict)
    ]
    table = render_table(["HOP", "OK", "DETAIL"], rows)
    broken = body.get("brokenHop")
    if broken is None:
        return head + table + "every hop passes\n"
    return head + table + f"broken at: {broken}\n"


def run(args: argparse.Namespace, ctx: Context) -> int:
    query = {"from": args.source, "to": args.destination}
    if args.zone:
        query["zone"] = args.zone
    mesh = urllib.parse.quote(args.mesh, safe="")
    body = ctx.client().get(f"/meshes/{mesh}/_explain", query)
    if not isinstance(body, dict) or not isinstance(body.get("hops"), list):
        raise CliError("unexpected answer from the explain endpoint: no hops")
    if args.output == "json":
        ctx.stdout.write(dump_json(body))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(body))
    else:
        ctx.stdout.write(render(body))
    return 0 if body.get("brokenHop") is None else EXIT_FAILED
