"""`meshctl generate dataplane-token`: a token a mesh-dp sidecar connects with (Kuma's
`kumactl generate dataplane-token`), printed to stdout for `--dataplane-token-file`.

    meshctl generate dataplane-token --mesh default --tag kuma.io/service=web \\
        [--name web-1] --valid-for 24h > web-1.token

`--tag k=v1,v2` may be repeated; the token lets a Dataplane connect only if every inbound's
tag `k` is one of the values (`kuma.io/service` is required). The control plane checks and
signs (POST /tokens/dataplane, admin only); meshctl only shapes the request.
"""

from __future__ import annotations

import argparse

from meshctl.commands.common import DEFAULT_MESH
from meshctl.context import Context
from meshctl.errors import EXIT_USAGE, CliError

SERVICE_TAG = "kuma.io/service"


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "dataplane-token",
        parents=[common],
        help="generate a dataplane token for a sidecar",
        description="Generate a dataplane token: the sidecar of a Dataplane in MESH whose "
        "inbounds carry only the given tag values may connect to its zone with it.",
    )
    p.add_argument("-m", "--mesh", default=DEFAULT_MESH, help=f"mesh (default: {DEFAULT_MESH})")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=V1[,V2]",
        help=f"allowed tag values; repeatable; {SERVICE_TAG} is required",
    )
    p.add_argument("--name", default="", help="bind the token to this Dataplane name")
    p.add_argument(
        "--valid-for", required=True, metavar="DURATION", help="how long it is valid, e.g. 24h"
    )
    p.set_defaults(func=run)


def parse_tags(specs: list[str]) -> dict[str, list[str]]:
    """`k=v1,v2` options -> {k: [v1, v2]}; the same key twice adds values."""
    tags: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        names = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not names:
            raise CliError(f"--tag {spec!r}: expected KEY=VALUE[,VALUE...]", EXIT_USAGE)
        have = tags.setdefault(key.strip(), [])
        have += [n for n in names if n not in have]
    if SERVICE_TAG not in tags:
        raise CliError(f"give --tag {SERVICE_TAG}=SERVICE (the services it may serve)", EXIT_USAGE)
    return tags


def run(args: argparse.Namespace, ctx: Context) -> int:
    body: dict[str, object] = {
        "mesh": args.mesh,
        "tags": parse_tags(args.tag),
        "type": "dataplane",
        "validFor": args.valid_for,
    }
    if args.name:
        body["name"] = args.name
    token = ctx.client().post_text("/tokens/dataplane", body)
    if not token:
        raise CliError("the control plane answered without a token")
    print(token, file=ctx.stdout)
    return 0
