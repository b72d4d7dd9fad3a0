"""HostnameGenerator templates: the few Go-template forms Kuma's documentation uses, read and
rendered by a tiny evaluator (no Go, Jinja or eval): literal text and `{{ .DisplayName }}`,
`{{ .Zone }}`, `{{ .Namespace }}`, `{{ .Mesh }}`, `{{ label "key" }}` (or `'key'`).
Anything else in `{{ }}` is refused where the HostnameGenerator is applied, naming it.

Kuma: kuma.io/docs/latest/networking/hostnamegenerator/ ("Template"). A value that is missing
(no namespace in Universal, a label the resource lacks) makes the template produce no
hostname for that resource, as Kuma's `label` function fails on a missing key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

FIELDS = ("DisplayName", "Zone", "Namespace", "Mesh")
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_FIELD = re.compile(r"\.([A-Za-z]+)")
_LABEL = re.compile(r"""label\s+(?:"([^"]*)"|'([^']*)')""")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
MAX_HOSTNAME = 253


class TemplateError(ValueError):
    """The template uses a form the evaluator does not have; the message names it."""


@dataclass(frozen=True, slots=True)
class Part:
    """Literal text (`kind` "text"), a field (`kind` "field") or a label (`kind` "label")."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class Subject:
    """What a template is rendered for: one MeshService, MeshMultiZoneService, ..."""

    display_name: str
    zone: str
    mesh: str
    labels: Mapping[str, str]
    namespace: str = ""


def parse_template(text: str) -> tuple[Part, ...]:
    """The parts of `text`; TemplateError names the first action it cannot evaluate."""
    parts: list[Part] = []
    pos = 0
    for m in _ACTION.finditer(text):
        if m.start() > pos:
            parts.append(Part("text", text[pos : m.start()]))
        action = m.group(1)
        field = _FIELD.fullmatch(action)
        label = _LABEL.fullmatch(action)
        if field is not None and field.group(1) in FIELDS:
            parts.append(Part("field", field.group(1)))
        elif label is not None:
            key = label.group(1) if label.group(1) is not None else label.group(2)
            parts.append(Part("label", key))
        else:
            allowed = ", ".join(f"{{{{ .{f} }}}}" for f in FIELDS)
            raise TemplateError(
                f"unsupported template action {m.group(0)!r}: meshfed evaluates {allowed} "
                'and {{ label "key" }}'
            )
        pos = m.end()
    if "{{" in text[pos:] or "}}" in text[pos:]:
        raise TemplateError("unbalanced '{{' or '}}' in the template")
    if pos < len(text):
        parts.append(Part("text", text[pos:]))
    return tuple(parts)


def render(parts: tuple[Part, ...], subject: Subject) -> str | None:
    """The hostname for `subject` (lower case), or None when a value it needs is missing or
    the result is not a DNS name."""
    values = {
        "DisplayName": subject.display_name,
        "Zone": subject.zone,
        "Namespace": subject.namespace,
        "Mesh": subject.mesh,
    }
    out: list[str] = []
    for part in parts:
        if part.kind == "text":
            out.append(part.value)
            continue
        value = values[part.value] if part.kind == "field" else subject.labels.get(part.value)
        if not value:
            return None
        out.append(value)
    return hostname_or_none("".join(out))


def hostname_or_none(text: str) -> str | None:
    """`text` lower-cased when it is a DNS hostname, else None."""
    name = text.strip().rstrip(".").lower()
    if not name or len(name) > MAX_HOSTNAME:
        return None
    if not all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name
