"""`meshctl generate ...`: credentials issued by the control plane (Kuma's `kumactl generate`).

One subcommand per kind of token, each in its own module with `register(sub, common)`:
`dataplane-token` (dataplane_token.py), `zone-token` (zone_token.py), `user-token`
(user_token.py).
"""

from __future__ import annotations

import argparse
from types import ModuleType

from meshctl.commands import dataplane_token, user_token, zone_token
from meshctl.commands.common import shows_usage

SUBCOMMANDS: tuple[ModuleType, ...] = (dataplane_token, zone_token, user_token)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "generate",
        parents=[common],
        help="generate tokens (dataplane-token, zone-token, user-token)",
        description="Ask the control plane for a token (admin only).",
    )
    p.set_defaults(func=shows_usage(p))
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for module in SUBCOMMANDS:
        module.register(kinds, common)
