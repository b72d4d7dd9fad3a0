"""`meshctl generate user-token`: a user token issued by the global (admin only), as kumactl.

    meshctl generate user-token --name jane --group team-a --valid-for 24h

prints the token; keep it in meshctl's configuration with `meshctl config control-planes add
... --auth-type tokens --auth-conf token=<token>` or pass it in MESHFED_API_TOKEN.
"""

from __future__ import annotations

import argparse

from meshctl.context import Context
from meshctl.errors import CliError


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    user = sub.add_parser(
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
    user.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    body = {"name": args.name, "groups": args.group, "validFor": args.valid_for}
    token = ctx.client().post_text("/tokens/user", body)
    if not token:
        raise CliError("the server answered POST /tokens/user with an empty body")
    print(token, file=ctx.stdout)
    return 0
