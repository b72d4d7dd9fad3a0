"""`meshctl version`: this client's version and, when reachable, the server's."""

from __future__ import annotations

import argparse

from meshctl.context import Context
from meshctl.errors import CliError
from meshfed import PRODUCT, __version__


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "version",
        parents=[common],
        help="show client and server versions",
        description="Show meshctl's version and, if the API answers, the control plane's "
        "product, version and mode. An unreachable server is reported but is not an error.",
    )
    p.set_defaults(func=run)


def describe_server(info: object) -> str:
    if not isinstance(info, dict):
        return "answered GET / with something that is not an object"
    parts = [str(info.get("product", "?")), str(info.get("version", "?"))]
    extra = [f"{key}: {info[key]}" for key in ("mode", "instanceId", "hostname") if info.get(key)]
    return " ".join(parts) + (f" ({', '.join(extra)})" if extra else "")


def run(args: argparse.Namespace, ctx: Context) -> int:
    print(f"Client: meshctl ({PRODUCT}) {__version__}", file=ctx.stdout)
    client = ctx.client()
    try:
        info = client.get("/")
    except CliError as exc:
        print(f"Server: unavailable ({exc.message})", file=ctx.stdout)
        return 0
    print(f"Server: {describe_server(info)} at {client.base_url}", file=ctx.stdout)
    return 0
