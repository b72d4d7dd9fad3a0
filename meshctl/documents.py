"""Turning what a user feeds `apply` into resource documents (pure: text in, dicts out).

Accepted: multi-document YAML, a JSON object, a JSON or YAML list of resources, or a saved list
response (`{"items": [...]}`); `{{ KEY }}` placeholders are filled from `-v KEY=VALUE`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from meshctl.errors import EXIT_USAGE, CliError

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings: resources carry them as RFC 3339 text,
    and a datetime object would neither compare equal to the server's copy nor encode as JSON.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # file name, or "<stdin>"
    index: int  # 1-based position within the source, after lists are flattened
    data: Any

    @property
    def where(self) -> str:
        return f"document {self.index} of {self.source}"


def parse_variables(pairs: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs from `-v`; the value may contain '='."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _PLACEHOLDER.fullmatch("{{" + key + "}}"):
            raise CliError(f"invalid variable {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        out[key] = value
    return out


def substitute(text: str, variables: dict[str, str], source: str) -> str:
    """Fills `{{ KEY }}`; a placeholder without a value is an error, never left in silently."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - variables.keys())
    if missing:
        raise CliError(
            f"{source}: no value for variable(s) {', '.join(missing)}",
            details=[f"pass -v {name}=VALUE" for name in missing],
        )
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], text)


def parse_documents(text: str, source: str) -> list[Document]:
    """Splits `text` into resource documents; raises CliError naming the line of a syntax error."""
    raw = _load(text, source)
    return [Document(source, i, data) for i, data in enumerate(_flatten(raw), start=1)]


def _load(text: str, source: str) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        # JSON first: YAML rejects some valid JSON (tabs as indentation, for one).
        try:
            return [json.loads(text)]
        except ValueError:
            pass
    try:
        return list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise CliError(f"{source}: not valid YAML or JSON: {problem}{at}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{source}: not valid YAML or JSON: {exc}") from None


def _flatten(docs: Iterable[Any]) -> Iterator[Any]:
    for doc in docs:
        if doc is None:  # an empty document, e.g. a trailing '---'
            continue
        if isinstance(doc, list):
            yield from _flatten(doc)
        elif isinstance(doc, dict) and "type" not in doc and isinstance(doc.get("items"), list):
            yield from _flatten(doc["items"])
        else:
            yield doc
