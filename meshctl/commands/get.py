"""`meshctl get TYPE [NAME]`: one resource or a list, as a table, YAML or JSON."""

from __future__ import annotations

import argparse
from typing import Any

from meshctl.client import collection_path, resource_path
from meshctl.commands.common import DEFAULT_MESH, mesh_for, positive_int
from meshctl.context import Context
from meshctl.errors import EXIT_USAGE, CliError
from meshctl.kinds import resolve_type
from meshctl.output import OUTPUT_FORMATS, dump_json, dump_yaml, resource_table
from meshfed.resources.descriptors import Scope


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "get",
        parents=[common],
        help="show one resource or list them",
        description="Show one resource or list resources of a type. TYPE is a type name, its "
        "plural or a short name, in any case (e.g. MeshTimeout, meshtimeouts, mt).",
    )
    p.add_argument("type", metavar="TYPE")
    p.add_argument("name", metavar="NAME", nargs="?", help="show only this resource")
    p.add_argument("-m", "--mesh", help=f"mesh of a mesh-scoped type (default: {DEFAULT_MESH})")
    p.add_argument(
        "-A", "--all-meshes", action="store_true", help="list a mesh-scoped type in every mesh"
    )
    p.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    p.add_argument(
        "--size",
        type=positive_int,
        metavar="N",
        help="fetch only the first N resources (default: every page)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    desc = resolve_type(ctx.registry, args.type)
    if args.all_meshes:
        if desc.scope is not Scope.MESH:
            raise CliError(f"{desc.name} is not scoped to a mesh; drop --all-meshes", EXIT_USAGE)
        if args.mesh or args.name:
            raise CliError("--all-meshes lists; it takes neither --mesh nor NAME", EXIT_USAGE)
    mesh = mesh_for(desc, args.mesh)
    client = ctx.client()
    result: Any
    if args.name:
        result = client.get(resource_path(desc, args.name, mesh))
        if not isinstance(result, dict):
            raise CliError(f"unexpected answer for {desc.name} {args.name!r}: not an object")
        items = [result]
    else:
        path = collection_path(desc, None if args.all_meshes else mesh)
        if args.size:
            items, total, more = client.list_page(path, args.size)
            if more:
                print(f"showing {len(items)} of {total}; drop --size to see all", file=ctx.stderr)
        else:
            items = client.list_all(path)
        result = items
    if args.output == "json":
        ctx.stdout.write(dump_json(result))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(result))
    elif items:
        ctx.stdout.write(resource_table(desc, items, ctx.now()))
    else:
        where = f' in mesh "{mesh}"' if mesh and not args.all_meshes else ""
        print(f"No {desc.plural} found{where}.", file=ctx.stderr)
    return 0
