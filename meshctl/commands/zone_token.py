"""`meshctl generate zone-token`: ask the global for a zone token (admin only).

The token goes to stdout alone (nothing else), so `meshctl generate zone-token --zone z >
zone-token` makes the file zone-cp's `--zone-token-file` reads. Defaults as the global's
`POST /tokens/zone`: scope kds and ingress, valid for 720h (meshfed/auth/zone_tokens.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from meshctl.context import Context
from meshctl.errors import EXIT_USAGE, CliError
from meshfed.auth.zone_tokens import DEFAULT_VALIDITY, parse_request


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    z = sub.add_parser(
        "zone-token",
        parents=[common],
        help="a zone's token: its zone-cp's KDS credential and its ingress's",
        description="Ask the global for a token identifying one zone, printed on stdout. "
        "Give it to the zone's control plane (zone-cp --zone-token-file) and, with scope "
        "ingress, to its zone ingress. Revoke one by adding its id (jti) to the GlobalSecret "
        "zone-token-revocations.",
    )
    z.add_argument("--zone", required=True, metavar="NAME", help="the zone the token identifies")
    z.add_argument(
        "--valid-for",
        default=DEFAULT_VALIDITY,
        metavar="DURATION",
        help=f"how long the token is valid, e.g. 24h or 30d (default {DEFAULT_VALIDITY})",
    )
    z.add_argument(
        "--scope",
        default="kds,ingress",
        metavar="SCOPES",
        help="comma-separated: kds (the zone-cp), ingress, egress (default kds,ingress)",
    )
    z.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    scope = [s.strip() for s in str(args.scope).split(",") if s.strip()]
    body: dict[str, Any] = {"zone": args.zone, "scope": scope, "validFor": args.valid_for}
    problems = parse_request(body)  # the server checks too; this names flags, not fields
    if isinstance(problems, list):
        flags = {"zone": "--zone", "validFor": "--valid-for"}
        details = [f"{flags.get(p.field.split('[')[0], '--scope')}: {p.reason}" for p in problems]
        raise CliError("invalid zone token request", EXIT_USAGE, details)
    token = ctx.client().post_text("/tokens/zone", body)
    if not isinstance(token, str) or not token.strip():
        raise CliError("the API did not answer with a token (is --api the global's?)")
    print(token.strip(), file=ctx.stdout)
    return 0
