"""MeshHTTPRoute in the sidecar: which rule a request matches, and what the rule's filters do
to it (decision 125). Pure: request heads in, heads and bytes out; outbound.py draws the
split and sends mirrors, proxy.py applies the result.

zone-cp ships the rules merged and in Gateway API precedence order (meshfed/dpconfig/
http_route.py); the first rule whose match holds decides. A match holds when every field it
sets does: `path` on the target's path (Exact; PathPrefix by whole `/` segments;
RegularExpression, a full match of Python's `re`, the engine the API validated it with),
`method`, `headers` (the values of a name joined by `,` as Envoy does; Exact, Prefix,
RegularExpression, Present, Absent), `queryParams` (the first value of a name; Exact,
RegularExpression).

Filters, in the rule's order: RequestHeaderModifier and URLRewrite (hostname: the Host field;
path: ReplaceFullPath, or ReplacePrefixMatch of the rule's PathPrefix) change the request sent
upstream; ResponseHeaderModifier the response head sent down; RequestRedirect answers at once
(`Location` from the request and its fields, Gateway API's port rule); RequestMirror copies the
request elsewhere (outbound.py, fire and forget).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import parse_qsl

from mesh_dp.http.parse import Headers, RequestHead, ResponseHead
from meshfed.dpconfig.model import (
    HeaderMatch,
    HeaderModifier,
    HttpMatch,
    HttpRule,
    PathRewrite,
    RequestRedirect,
)

__all__ = ["Action", "Filtering", "Router", "modify", "redirect_response", "rewritten"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
PINNED_MAX = 256  # requests in flight whose filters changed them, per outbound (at most)
_REASONS = {
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
}


def split_target(target: bytes) -> tuple[str, str]:
    """(path, query) of a request target; an absolute-form target loses scheme and host."""
    text = target.decode("latin-1")
    if "://" in text[:10]:
        rest = text.split("://", 1)[1]
        slash = rest.find("/")
        text = "/" if slash < 0 else rest[slash:]
    path, _, query = text.partition("?")
    return path or "/", query


def _values(headers: Headers, name: bytes) -> bytes | None:
    found = [v for k, v in headers if k.lower() == name]
    return b",".join(found) if found else None


class _Compiled:
    """One match, its regular expressions compiled once per config."""

    __slots__ = ("headers", "match", "method", "path", "path_re", "query")

    def __init__(self, match: HttpMatch) -> None:
        self.match = match
        self.path = match.path
        self.path_re = (
            re.compile(match.path.value)
            if match.path is not None and match.path.type == "RegularExpression"
            else None
        )
        self.method = match.method.encode() if match.method else None
        self.headers = [
            (
                h,
                h.name.lower().encode("latin-1"),
                re.compile(h.value) if h.type == "RegularExpression" else None,
            )
            for h in match.headers
        ]
        self.query = [
            (q, re.compile(q.value) if q.type == "RegularExpression" else None)
            for q in match.query_params
        ]

    def holds(self, head: RequestHead) -> bool:
        if self.method is not None and head.method != self.method:
            return False
        if self.path is not None or self.query:
            path, query = split_target(head.target)
            if self.path is not None and not self._path(path):
                return False
            if self.query and not self._query(query):
                return False
        return all(
            _header(h, compiled, _values(head.headers, n)) for h, n, compiled in self.headers
        )

    def _path(self, path: str) -> bool:
        assert self.path is not None
        value = self.path.value
        if self.path_re is not None:
            return self.path_re.fullmatch(path) is not None
        if self.path.type == "Exact":
            return path == value
        if value == "/":
            return True
        return path == value or path.startswith(value + "/")

    def _query(self, query: str) -> bool:
        first: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            first.setdefault(name, value)
        for q, compiled in self.query:
            got = first.get(q.name)
            if got is None:
                return False
            if compiled is not None:
                if compiled.fullmatch(got) is None:
                    return False
            elif got != q.value:
                return False
        return True


def _header(h: HeaderMatch, compiled: re.Pattern[str] | None, got: bytes | None) -> bool:
    if h.type == "Absent":
        return got is None
    if got is None:
        return False
    if h.type == "Present":
        return True
    text = got.decode("latin-1")
    if compiled is not None:
        return compiled.fullmatch(text) is not None
    if h.type == "Prefix":
        return text.startswith(h.value)
    return text == h.value


class Router:
    """The rules of one outbound, ready to match requests."""

    def __init__(self, rules: Sequence[HttpRule]) -> None:
        self.rules = tuple(rules)
        self._compiled = [_Compiled(r.match) for r in self.rules]
        self.filtered = any(r.filters for r in self.rules)  # some rule has filters
        self._last: tuple[RequestHead, int | None] | None = None
        # requests changed by their rule's filters, by identity: a retry's choice must not
        # match the rewritten request again (bounded: the oldest go first)
        self._pinned: dict[int, tuple[RequestHead, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, head: RequestHead) -> int | None:
        """The index of the first rule `head` matches; None: no rule does."""
        last = self._last
        if last is not None and last[0] is head:  # asked again for the same request
            return last[1]
        pinned = self._pinned.get(id(head))
        if pinned is not None and pinned[0] is head:
            return pinned[1]
        found = next((i for i, c in enumerate(self._compiled) if c.holds(head)), None)
        self._last = (head, found)
        return found

    def pin(self, head: RequestHead, rule: int) -> None:
        """`head` (a request as a rule's filters changed it) belongs to `rule`."""
        if len(self._pinned) >= PINNED_MAX:
            del self._pinned[next(iter(self._pinned))]
        self._pinned[id(head)] = (head, rule)


# --- filters ---------------------------------------------------------------------------------


def modify(headers: Headers, mod: HeaderModifier) -> Headers:
    """`set` replaces every field of a name, `add` appends one, `remove` drops a name."""
    drop = {n.lower().encode("latin-1") for n in mod.remove}
    drop |= {kv.name.lower().encode("latin-1") for kv in mod.set}
    out = [(k, v) for k, v in headers if k.lower() not in drop]
    out += [(kv.name.encode("latin-1"), kv.value.encode("latin-1")) for kv in mod.set]
    out += [(kv.name.encode("latin-1"), kv.value.encode("latin-1")) for kv in mod.add]
    return out


def rewritten(path: str, rewrite: PathRewrite, match: HttpMatch) -> str:
    """The path after a ReplaceFullPath, or a ReplacePrefixMatch of the matched prefix."""
    if rewrite.type == "ReplaceFullPath":
        return rewrite.replace_full_path or "/"
    prefix = match.path.value if match.path is not None else "/"
    rest = path[len(prefix.rstrip("/")) :]
    return (rewrite.replace_prefix_match or "/").rstrip("/") + rest or "/"


def _with_path(target: bytes, path: str, query: str) -> bytes:
    return (path + ("?" + query if query else "")).encode("latin-1")


def _set_host(headers: Headers, host: str) -> Headers:
    return [*((k, v) for k, v in headers if k.lower() != b"host"), (b"host", host.encode())]


def redirect_response(head: RequestHead, r: RequestRedirect, match: HttpMatch) -> bytes:
    """The redirect answered for `head`: no body; the connection stays as the request asks."""
    path, query = split_target(head.target)
    host = (head.header(b"host") or b"").decode("latin-1")
    name, port = host, None
    if host.rpartition(":")[2].isdigit() and not host.endswith("]"):
        name, _, digits = host.rpartition(":")
        port = int(digits)
    scheme = r.scheme or "http"
    if r.port is not None:
        port = r.port
    elif r.scheme is not None:
        port = None  # the new scheme's well-known port (Gateway API)
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    if r.path is not None:
        path = rewritten(path, r.path, match)
    where = f"{scheme}://{r.hostname or name}{'' if port is None else f':{port}'}{path}"
    if query:
        where += "?" + query
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (r.status_code, _REASONS.get(r.status_code, b"Redirect")),
        b"location: %s\r\n" % where.encode("latin-1", errors="replace"),
        b"content-length: 0\r\n",
    ]
    if not head.keep_alive:
        lines.append(b"connection: close\r\n")
    return b"".join(lines) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Action:
    """What a matched rule's filters do to one request."""

    head: RequestHead  # the request as it goes upstream
    redirect: bytes | None = None  # answer this instead (a whole response)
    status: int = 0  # the redirect's
    response: tuple[HeaderModifier, ...] = ()  # ResponseHeaderModifiers, in order
    # send a copy: the request as it goes upstream and its framed body
    mirror: Callable[[RequestHead, bytes], None] | None = None

    def respond(self, head: ResponseHead) -> ResponseHead:
        """The response head with the ResponseHeaderModifiers applied."""
        headers = head.headers
        for mod in self.response:
            headers = modify(headers, mod)
        return replace(head, headers=headers, raw=b"", hop=None)


def apply(rule: HttpRule, head: RequestHead) -> Action:
    """The filters of `rule` (which `head` matched), but mirrors (outbound.py adds them)."""
    out = head
    response: list[HeaderModifier] = []
    for f in rule.filters:
        if f.type == "RequestRedirect" and f.request_redirect is not None:
            r = f.request_redirect
            return Action(head, redirect_response(head, r, rule.match), r.status_code)
        if f.type == "RequestHeaderModifier" and f.request_header_modifier is not None:
            out = replace(out, headers=modify(out.headers, f.request_header_modifier))
        elif f.type == "ResponseHeaderModifier" and f.response_header_modifier is not None:
            response.append(f.response_header_modifier)
        elif f.type == "URLRewrite" and f.url_rewrite is not None:
            rw = f.url_rewrite
            if rw.hostname is not None:
                out = replace(out, headers=_set_host(out.headers, rw.hostname))
            if rw.path is not None:
                path, query = split_target(out.target)
                new = rewritten(path, rw.path, rule.match)
                out = replace(out, target=_with_path(out.target, new, query))
    if out is not head:
        out = replace(out, raw=b"", hop=None)  # headers.request_bytes rebuilds the head
    return Action(out, response=tuple(response))


def mirrored(head: RequestHead) -> RequestHead:
    """A mirror's copy: Envoy appends `-shadow` to the Host so the backend can tell."""
    host = (head.header(b"host") or b"").decode("latin-1")
    name, colon, port = host.rpartition(":") if ":" in host else (host, "", "")
    return replace(head, headers=_set_host(head.headers, f"{name}-shadow{colon}{port}"), raw=b"")


class Filtering(Protocol):
    """The filters of an outbound's routes, as proxy.py and fast.py ask for them."""

    def wants(self, head: RequestHead) -> bool:
        """`head` matches a rule with filters (the callback path leaves it to proxy.py)."""

    def filtered(self, head: RequestHead) -> Action | None:
        """What the matched rule's filters do to `head`; None: no rule with filters."""
