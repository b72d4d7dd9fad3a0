"""`meshctl apply -f FILE|-`: PUT each document to its path, report each outcome.

Every valid document is applied even when others fail (each failure is reported with the
server's reasons and the exit code is 1), because a file of policies is usually independent
resources; nothing is rolled back. After a failure, a summary on stderr says which documents
were applied and which were not, so a partial apply is never mistaken for none or all. A file
that does not parse at all applies nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from meshctl.client import ApiClient, ApiUnreachable, resource_path
from meshctl.commands.common import display
from meshctl.context import Context
from meshctl.documents import Document, parse_documents, parse_variables, substitute
from meshctl.errors import CliError
from meshctl.output import error_lines
from meshfed.resources.descriptors import Registry, Scope, TypeDescriptor
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN, LABEL_ZONE, META_KEYS
from meshfed.resources.unsupported import unsupported_type

Outcome = Literal["created", "configured", "unchanged"]
# Labels the control plane sets itself; a document that leaves them out has not changed them.
SYSTEM_LABELS = frozenset({LABEL_ORIGIN, LABEL_ZONE, LABEL_DISPLAY_NAME})


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "apply",
        parents=[common],
        help="create or update resources from YAML or JSON",
        description="Create or update every resource in the given files (multi-document YAML, "
        "a JSON object or a JSON list). Prints created, configured or unchanged per resource.",
    )
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="file to apply; '-' reads standard input; may be repeated",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate on the server without storing anything",
    )
    p.add_argument(
        "-v",
        "--var",
        dest="vars",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace {{ KEY }} in the input with VALUE; may be repeated",
    )
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one document goes."""

    desc: TypeDescriptor
    name: str
    mesh: str

    @property
    def path(self) -> str:
        return resource_path(self.desc, self.name, self.mesh)

    @property
    def label(self) -> str:
        return display(self.desc, self.name)


def target_of(data: Any, registry: Registry) -> Target:
    """The path a document is PUT to; the server validates everything else."""
    if not isinstance(data, dict):
        raise CliError(f"a resource must be an object, got {type(data).__name__}")
    type_name = data.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise CliError("missing 'type'", details=[f"type: one of {', '.join(registry.names())}"])
    try:
        desc = registry.get(type_name)
    except KeyError:
        missing = unsupported_type(type_name)
        if missing is not None and missing.name == type_name:
            raise CliError(missing.message(), details=[f"type: {type_name}"]) from None
        hint = registry.lookup(type_name)
        reason = f'did you mean "{hint.name}"?' if hint else f"one of {', '.join(registry.names())}"
        raise CliError(f"unknown type {type_name!r}", details=[f"type: {reason}"]) from None
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise CliError(f"{desc.name} without a name", details=["name: is required"])
    mesh = data.get("mesh", "")
    if desc.scope is Scope.MESH and (not isinstance(mesh, str) or not mesh):
        raise CliError(
            f"{display(desc, name)} has no mesh",
            details=[f"mesh: is required for {desc.name} (a mesh-scoped type)"],
        )
    return Target(desc, name, mesh if desc.scope is Scope.MESH else "")


def _body(data: dict[str, Any], desc: TypeDescriptor) -> Any:
    if desc.spec_wrapped:
        return data.get("spec") or {}
    return {k: v for k, v in data.items() if k not in META_KEYS}


def classify(existing: dict[str, Any] | None, doc: dict[str, Any], desc: TypeDescriptor) -> Outcome:
    """What applying `doc` over `existing` amounts to (times and system labels do not count)."""
    if existing is None:
        return "created"
    mine = doc.get("labels") or {}
    theirs = {
        k: v
        for k, v in (existing.get("labels") or {}).items()
        if k in mine or k not in SYSTEM_LABELS
    }
    if mine == theirs and _body(doc, desc) == _body(existing, desc):
        return "unchanged"
    return "configured"


def apply_one(client: ApiClient, target: Target, doc: dict[str, Any], dry_run: bool) -> Outcome:
    outcome = classify(client.get_or_none(target.path), doc, target.desc)
    if outcome == "unchanged":
        # Nothing to write, but the server must still judge the document: applying the global's
        # copy of a policy to a zone API has to say it is read-only there, not "unchanged". A
        # dry run stores nothing.
        client.put(target.path, doc, dry_run=True)
        return outcome
    status = client.put(target.path, doc, dry_run=dry_run)
    if dry_run:
        return outcome
    # The status is the truth if someone else wrote the resource between our GET and PUT.
    if status == 201:
        return "created"
    if status == 200:
        return "configured"
    return outcome


def read_source(name: str, stdin: TextIO) -> tuple[str, str]:
    """(display name, text) of a `-f` argument."""
    if name == "-":
        return "<stdin>", stdin.read()
    try:
        with open(name, encoding="utf-8") as fh:
            return name, fh.read()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read {name}: not UTF-8 text") from None


def load(files: list[str], variables: dict[str, str], stdin: TextIO) -> list[Document]:
    docs: list[Document] = []
    for name in files:
        source, text = read_source(name, stdin)
        docs += parse_documents(substitute(text, variables, source), source)
    if not docs:
        raise CliError(f"no resources found in {', '.join(files)}")
    return docs


def run(args: argparse.Namespace, ctx: Context) -> int:
    docs = load(args.files, parse_variables(args.vars), ctx.stdin)
    client = ctx.client()
    suffix = " (dry run)" if args.dry_run else ""
    applied: list[str] = []
    failed: list[str] = []
    for doc in docs:
        try:
            target = target_of(doc.data, ctx.registry)
        except CliError as exc:
            failed.append(doc.where)
            _report(ctx.stderr, f"{doc.where}: {exc.message}", exc)
            continue
        try:
            outcome = apply_one(client, target, doc.data, args.dry_run)
        except ApiUnreachable:
            if applied:
                not_applied = [*failed, f"{target.label} ({doc.where})"]
                print(summary(applied, not_applied, len(docs)), file=ctx.stderr)
            raise  # no other document would get through either
        except CliError as exc:
            failed.append(f"{target.label} ({doc.where})")
            _report(ctx.stderr, f"{target.label} ({doc.where}): {exc.message}", exc)
            continue
        applied.append(f"{target.label} {outcome}")
        print(f"{target.label} {outcome}{suffix}", file=ctx.stdout)
        ctx.stdout.flush()
    if failed:
        print(summary(applied, failed, len(docs)), file=ctx.stderr)
    return 1 if failed else 0


def summary(applied: list[str], failed: list[str], total: int) -> str:
    """What a partly failed apply did: every valid document went through, nothing rolled back."""
    lines = [
        f"{len(applied)} of {total} documents applied ({len(failed)} failed; apply goes on past "
        "a failing document and rolls nothing back)",
        f"  applied: {', '.join(applied) or 'none'}",
        f"  not applied: {', '.join(failed)}",
    ]
    return "\n".join(lines)


def _report(stream: TextIO, message: str, exc: CliError) -> None:
    for line in error_lines(CliError(message, exc.exit_code, exc.details)):
        print(line, file=stream)
    stream.flush()
