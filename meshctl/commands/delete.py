"""`meshctl delete TYPE NAME`: remove one resource (404 from the server is an error)."""

from __future__ import annotations

import argparse

from meshctl.client import ApiError, resource_path
from meshctl.commands.common import DEFAULT_MESH, display, mesh_for
from meshctl.context import Context
from meshctl.errors import EXIT_FAILED, CliError
from meshctl.kinds import resolve_type


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "delete",
        parents=[common],
        help="delete a resource",
        description="Delete one resource. Deleting a Mesh deletes everything in it; deleting "
        "a Zone (only while it is offline) removes the inventory it sent to the global.",
    )
    p.add_argument("type", metavar="TYPE")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-m", "--mesh", help=f"mesh of a mesh-scoped type (default: {DEFAULT_MESH})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    desc = resolve_type(ctx.registry, args.type)
    mesh = mesh_for(desc, args.mesh)
    try:
        ctx.client().delete(resource_path(desc, args.name, mesh))
    except ApiError as exc:
        if desc.name == "Zone" and exc.status == 409:
            raise CliError(
                f"zone {args.name} is still connected: {exc.detail or exc.title}",
                EXIT_FAILED,
                [
                    "stop its zone-cp, wait until `meshctl inspect zones` shows it offline, "
                    "then delete it again (its inventory is removed with it)"
                ],
            ) from None
        raise
    where = f' from mesh "{mesh}"' if mesh else ""
    print(f"{display(desc, args.name)} deleted{where}", file=ctx.stdout)
    return 0
