"""Request bodies: one JSON or YAML document, size-limited, with errors a user can act on.

The size limit is enforced while reading (and from Content-Length before reading), so a
client cannot make the server buffer more than the limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml
from aiohttp import hdrs, web

from meshfed.api.errors import ApiError, bad_request
from meshfed.resources.errors import FieldError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
_CHUNK = 64 * 1024


class _Loader(yaml.SafeLoader):
    """Safe YAML without timestamp resolution: bodies must stay JSON-compatible, and a
    creationTime copied from `meshctl get -o yaml` must stay a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


async def read_document(request: web.Request, max_bytes: int) -> Any:
    """The body's single document (dict, list or scalar), or an ApiError (400/413/415)."""
    content_type = request.content_type if hdrs.CONTENT_TYPE in request.headers else None
    if content_type == "application/octet-stream":
        content_type = None  # "some bytes": as good as no type, so sniff JSON, then YAML
    if content_type is not None and content_type not in JSON_TYPES | YAML_TYPES:
        hint = (
            " (curl -d sends form encoding: add -H 'Content-Type: application/json')"
            if content_type == "application/x-www-form-urlencoded"
            else ""
        )
        raise ApiError(
            415,
            "Unsupported Media Type",
            f"content type {content_type!r} is not supported; send application/json or "
            f"application/yaml{hint}",
        )
    raw = await read_limited(request, max_bytes)
    return parse_document(raw, content_type, request.charset)


async def read_limited(request: web.Request, max_bytes: int) -> bytes:
    too_large = ApiError(
        413, "Payload Too Large", f"the request body is larger than {max_bytes} bytes"
    )
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large
    buf = bytearray()
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            raise too_large


def parse_document(raw: bytes, content_type: str | None, charset: str | None = None) -> Any:
    """Parses by content type; without one, tries JSON and then YAML (JSON is mostly YAML)."""
    try:
        text = raw.decode("utf-8-sig" if charset in (None, "utf-8", "utf8") else charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise bad_request(f"the body cannot be decoded as {charset or 'utf-8'}: {exc}") from None
    if not text.strip():
        raise bad_request("the request body is empty; send one resource as JSON or YAML")
    if content_type in JSON_TYPES:
        doc = _parse_json(text)
    elif content_type in YAML_TYPES:
        doc = _parse_yaml(text)
    else:
        try:
            doc = _parse_json(text)
        except ApiError:
            try:
                doc = _parse_yaml(text)
            except ApiError as exc:
                raise bad_request(f"the body is neither JSON nor YAML: {exc.detail}") from None
    _check_plain(doc, len(raw) + 1)
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise bad_request(f"malformed JSON at {where}: {exc.msg}") from None
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise bad_request("malformed JSON: nested too deeply") from None


def _parse_yaml(text: str) -> Any:
    try:
        docs = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise bad_request(f"malformed YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise bad_request(f"malformed YAML: {exc}") from None
    except RecursionError:
        raise bad_request("malformed YAML: nested too deeply") from None
    if not docs:
        raise bad_request("the request body holds no YAML document")
    if len(docs) > 1:
        raise bad_request(
            f"the request body holds {len(docs)} YAML documents; send one resource per "
            "request (meshctl apply splits multi-document files)"
        )
    return docs[0]


def _check_plain(doc: Any, max_nodes: int) -> None:
    """Only JSON values may pass: YAML can also produce sets, bytes, non-string keys, and via
    aliases a tree far larger than its text (bounded here by the body's size in bytes)."""
    stack: list[tuple[str, Any]] = [("", doc)]
    seen = 0
    while stack:
        path, value = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise bad_request("the document expands (through YAML aliases) beyond its size limit")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise bad_request(
                        "keys must be strings", [FieldError(path or "<root>", f"key {key!r}")]
                    )
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise bad_request("numbers must be finite", [FieldError(path, "not finite")])
        elif value is not None and not isinstance(value, str | int | bool):
            raise bad_request(
                "only JSON values are accepted",
                [
                    FieldError(
                        path or "<root>", f"unsupported YAML value of type {type(value).__name__}"
                    )
                ],
            )
