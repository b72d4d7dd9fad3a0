"""`meshctl export [-o FILE]`: back up the global's own resources as YAML for `meshctl apply`.

What is exported is what the global owns and users (or the global itself, for the mesh CA)
wrote: meshes, zones (their `enabled` switch), secrets and policies. Zone-owned resources
(dataplanes, ingresses, their insights) are left out: the zones send them again when they
connect. System resources (ZoneInsight) are left out: the global rebuilds them. Meshes come
first and secrets before policies, so `meshctl apply -f FILE` restores in a working order.
Times and system labels are dropped: a restore writes them anew. GlobalSecrets (the token
signing keys and the bootstrap admin token) are left out: restoring them would replace the
target global's credentials in the middle of the restore, under the token doing it; the restored
global keeps its own keys, and tokens are issued anew from it.

The file holds the meshes' CA keys: it is written readable by its owner only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from meshctl.client import ApiClient, collection_path
from meshctl.commands.apply import SYSTEM_LABELS
from meshctl.context import Context
from meshctl.errors import CliError
from meshfed.resources.descriptors import Mode, Registry, TypeDescriptor
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_ZONE
from meshfed.resources.types.secret import GLOBAL_SECRET

_DROPPED = ("creationTime", "modificationTime")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="back up the global's resources as YAML (restore with apply -f)",
        description="Write every resource the global control plane owns (meshes, zones, "
        "secrets, policies) as multi-document YAML that 'meshctl apply -f' restores. "
        "Zone-owned resources and insights are left out. The output holds CA keys.",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE (created readable by its owner only) instead of standard output",
    )
    p.set_defaults(func=run)


def exported_types(registry: Registry) -> list[TypeDescriptor]:
    """The global's own, writable types, in registry order (Mesh first), but its credentials
    (GlobalSecret)."""
    return [
        d
        for d in registry
        if d.owner is Mode.GLOBAL and not d.system_only and d.name != GLOBAL_SECRET.name
    ]


def clean(item: dict[str, Any]) -> dict[str, Any] | None:
    """The document to restore `item`, or None for something a zone sent up."""
    labels = item.get("labels") or {}
    if labels.get(LABEL_ORIGIN) == ORIGIN_ZONE:
        return None
    doc = {k: v for k, v in item.items() if k not in _DROPPED and k != "labels"}
    kept = {k: v for k, v in labels.items() if k not in SYSTEM_LABELS}
    if kept:
        # Right after type, mesh and name, as a user would write it.
        front = [k for k in ("type", "mesh", "name") if k in doc]
        doc = {**{k: doc[k] for k in front}, "labels": kept, **doc}
    return doc


def collect(client: ApiClient, registry: Registry) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for desc in exported_types(registry):
        items = client.list_all(collection_path(desc, None))
        items.sort(key=lambda i: (str(i.get("mesh", "")), str(i.get("name", ""))))
        docs += [doc for doc in map(clean, items) if doc is not None]
    return docs


def render(docs: Iterable[dict[str, Any]], source: str) -> str:
    docs = list(docs)
    counts = Counter(str(d.get("type")) for d in docs)
    summary = ", ".join(f"{t} {n}" for t, n in counts.items()) or "nothing"
    header = (
        f"# meshctl export of {source}: {summary}.\n"
        "# Restore with: meshctl apply -f <this file>. Holds the meshes' CA keys: keep it safe.\n"
    )
    if not docs:
        return header
    body = yaml.safe_dump_all(
        docs, sort_keys=False, default_flow_style=False, allow_unicode=True, explicit_start=True
    )
    return header + body


def _check_global(client: ApiClient) -> None:
    info = client.get("/")
    mode = info.get("mode") if isinstance(info, dict) else None
    if mode != str(Mode.GLOBAL):
        raise CliError(
            f"{client.base_url} is not a global control plane (mode: {mode or 'unknown'}); "
            "export reads the global, which owns meshes and policies"
        )


def write_private(path: Path, text: str) -> None:
    """Replaces `path` at once (never a half-written backup), mode 0600."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    _check_global(client)
    docs = collect(client, ctx.registry)
    text = render(docs, client.base_url)
    if args.output is None:
        ctx.stdout.write(text)
        return 0
    path = Path(args.output)
    try:
        write_private(path, text)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"exported {len(docs)} resource(s) to {path}", file=ctx.stderr)
    return 0
