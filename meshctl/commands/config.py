"""`meshctl config`: the control planes meshctl knows (kumactl's `config control-planes`).

meshctl config control-planes add --name X --address URL [--auth-type tokens
    --auth-conf token=T] [--ca-cert-file F] [--overwrite]   (and makes X current)
meshctl config control-planes list | use NAME | remove NAME
meshctl config view                                           (tokens redacted)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from meshctl import config
from meshctl.client import normalize_base_url
from meshctl.commands.common import shows_usage
from meshctl.context import Context
from meshctl.errors import EXIT_USAGE, CliError
from meshctl.output import dump_yaml, render_table


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "config",
        parents=[common],
        help="manage meshctl's configuration (control planes and their tokens)",
        description="meshctl keeps control planes (address, user token, CA file) and the "
        f"current one in a file: --config-file, env {config.CONFIG_ENV}, or "
        f"{config.DEFAULT_CONFIG}. Commands talk to the current one unless --api or "
        "MESHFED_API says otherwise.",
    )
    p.set_defaults(func=shows_usage(p))
    actions = p.add_subparsers(dest="config_action", metavar="ACTION")
    view = actions.add_parser(
        "view", parents=[common], help="show the configuration (tokens redacted)"
    )
    view.set_defaults(func=run_view)

    cps = actions.add_parser(
        "control-planes", parents=[common], help="add, list, use or remove control planes"
    )
    cps.set_defaults(func=shows_usage(cps))
    cp_actions = cps.add_subparsers(dest="cp_action", metavar="ACTION")
    add = cp_actions.add_parser(
        "add",
        parents=[common],
        help="add a control plane and make it current",
        description="Add a control plane and make it the current one.",
    )
    add.add_argument("--name", required=True, help="a name for it (e.g. prod)")
    add.add_argument("--address", required=True, metavar="URL", help="its API, http(s)://H:P")
    add.add_argument(
        "--auth-type",
        choices=config.AUTH_TYPES,
        help="how to authenticate: tokens (a user token, given with --auth-conf token=...)",
    )
    add.add_argument(
        "--auth-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="authentication settings; for tokens: token=<user token>",
    )
    add.add_argument(
        "--ca-cert-file",
        metavar="FILE",
        help="PEM CA certificate that verifies an https API (default: the system's CAs)",
    )
    add.add_argument("--overwrite", action="store_true", help="replace one of the same name")
    add.set_defaults(func=run_add)
    lst = cp_actions.add_parser("list", parents=[common], help="list the control planes")
    lst.set_defaults(func=run_list)
    for action, text in (("use", "make a control plane current"), ("remove", "forget one")):
        a = cp_actions.add_parser(action, parents=[common], help=text)
        a.add_argument("name", metavar="NAME")
        a.set_defaults(func=run_use if action == "use" else run_remove)


def auth_token(auth_type: str | None, conf: list[str]) -> str | None:
    """The token of `--auth-type tokens --auth-conf token=T`; CliError for anything else."""
    pairs: dict[str, str] = {}
    for item in conf:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--auth-conf {item!r}: expected KEY=VALUE", EXIT_USAGE)
        pairs[key.strip()] = value.strip()
    if auth_type is None:
        if pairs:
            raise CliError("--auth-conf needs --auth-type tokens", EXIT_USAGE)
        return None
    unknown = sorted(set(pairs) - {"token"})
    if unknown:
        raise CliError(
            f"--auth-conf: unknown key(s) {', '.join(unknown)} for --auth-type {auth_type} "
            "(only token=...)",
            EXIT_USAGE,
        )
    if not pairs.get("token"):
        raise CliError(f"--auth-type {auth_type} needs --auth-conf token=<user token>", EXIT_USAGE)
    return pairs["token"]


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    name = config.check_name(args.name)
    address = normalize_base_url(args.address)
    token = auth_token(args.auth_type, args.auth_conf)
    ca = args.ca_cert_file
    if ca is not None:
        ca_path = Path(ca).expanduser()
        if not ca_path.is_file():
            raise CliError(f"--ca-cert-file {ca}: no such file", EXIT_USAGE)
        ca = str(ca_path.absolute())
    path = ctx.config_path
    cfg = config.load(path).with_plane(
        config.ControlPlane(name, address, token, ca), overwrite=args.overwrite, make_current=True
    )
    config.save(path, cfg)
    print(f"added control plane {name!r} ({address}); it is now current", file=ctx.stdout)
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    cfg = config.load(ctx.config_path)
    rows = [
        [
            "*" if cp.name == cfg.current else "",
            cp.name,
            cp.address,
            "token" if cp.token else "none",
        ]
        for cp in cfg.control_planes
    ]
    ctx.stdout.write(render_table(["ACTIVE", "NAME", "ADDRESS", "AUTH"], rows))
    return 0


def run_use(args: argparse.Namespace, ctx: Context) -> int:
    cfg = config.load(ctx.config_path).using(args.name)
    config.save(ctx.config_path, cfg)
    print(f"switched to control plane {args.name!r}", file=ctx.stdout)
    return 0


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    cfg = config.load(ctx.config_path).without(args.name)
    config.save(ctx.config_path, cfg)
    print(f"removed control plane {args.name!r}", file=ctx.stdout)
    return 0


def run_view(args: argparse.Namespace, ctx: Context) -> int:
    cfg = config.load(ctx.config_path)
    ctx.stdout.write(dump_yaml(cfg.to_dict(redact=True)))
    return 0
