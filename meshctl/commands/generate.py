"""`meshctl generate user-token`: a user token issued by the global (admin only), as kumactl.

    meshctl generate user-token --name jane --group team-a --valid-for 24h

prints the token; keep it in meshctl's configuration with `meshctl config control-planes add
... --auth-type tokens --auth-conf token=<token>` or pass it in MESHFED_API_TOKEN.
"""

from __future__ import annotations

import argparse

from meshctl.commands.common import shows_usage
from meshctl.context import Context
from meshctl.errors import CliError


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "generate",
        parents=[common],
        help="generate tokens (user-token)",
        description="Generate tokens signed by the global control plane (admin only).",
    )
    p.set_defaults(func=shows_usage(p))
    kinds = p.add_subparsers(dest="generate_kind", metavar="KIND")
    user = kinds.add_parser(
        "user-token",
        parents=[common],
        help="a user token for the API",
        description="Issue a user token at the global (POST /tokens/user); needs an admin.",
    )
    user.add_argument("--name", required=True, help="who the token is for")
    user.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group of the user (repeatable); mesh-system:admin makes an admin",
    )
    user.add_argument(
        "--valid-for", required=True, metavar="DURATION", help="validity, e.g. 30m, 24h"
    )
    user.set_defaults(func=run_user_token)


def run_user_token(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    body = {"name": args.name, "groups": args.group, "validFor": args.valid_for}
    _, raw = client.send("POST", client.url("/tokens/user"), body, accept="text/plain")
    token = raw.decode("ascii", "replace").strip()
    if not token:
        raise CliError("the server answered POST /tokens/user with an empty body")
    print(token, file=ctx.stdout)
    return 0
