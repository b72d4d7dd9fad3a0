"""MeshHTTPRoute in the sidecar (mesh_dp/http/route.py): which rule a request matches, and
what each filter does to it; pure, on parsed heads."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mesh_dp.http.headers import request_bytes
from mesh_dp.http.parse import RequestHead, RequestParser, ResponseHead, ResponseParser
from mesh_dp.http.route import Router, apply, mirrored, modify, redirect_response
from meshfed.dpconfig.model import (
    HeaderKV,
    HeaderModifier,
    HttpFilter,
    HttpMatch,
    HttpRule,
    RequestRedirect,
)


def head(target: str = "/", method: str = "GET", **headers: str) -> RequestHead:
    fields = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    raw = f"{method} {target} HTTP/1.1\r\nhost: backend:8080\r\n{fields}\r\n".encode()
    first = RequestParser().feed(raw)[0]
    assert isinstance(first, RequestHead)
    return first


def match(**m: Any) -> HttpMatch:
    return msgspec.convert(m, HttpMatch)


def rule(m: dict[str, Any], *filters: dict[str, Any]) -> HttpRule:
    return HttpRule(match(**m), tuple(msgspec.convert(f, HttpFilter) for f in filters))


def matches(m: dict[str, Any], request: RequestHead) -> bool:
    return Router([rule(m)]).match(request) == 0


def test_paths() -> None:
    exact, prefix = {"type": "Exact", "value": "/a"}, {"type": "PathPrefix", "value": "/api"}
    assert matches({"path": exact}, head("/a")) and matches({"path": exact}, head("/a?x=1"))
    assert not matches({"path": exact}, head("/a/")) and not matches({"path": exact}, head("/ab"))
    assert matches({"path": prefix}, head("/api")) and matches({"path": prefix}, head("/api/v"))
    assert not matches({"path": prefix}, head("/apix"))  # whole segments only
    assert matches({"path": {"type": "PathPrefix", "value": "/"}}, head("/anything"))
    regex = {"type": "RegularExpression", "value": "/v[0-9]+/.*"}
    assert matches({"path": regex}, head("/v2/users")) and not matches(
        {"path": regex}, head("/x/v2/")
    )
    assert matches({"path": exact}, head("http://backend:8080/a"))  # absolute form


def test_method_headers_and_query() -> None:
    assert matches({"method": "POST"}, head(method="POST"))
    assert not matches({"method": "POST"}, head())
    hdr = [{"name": "x-v", "value": "v2"}]
    assert matches({"headers": hdr}, head(x_v="v2")) and not matches({"headers": hdr}, head())
    assert not matches({"headers": hdr}, head(x_v="v22"))
    assert matches({"headers": [{"name": "x-v", "type": "Prefix", "value": "v"}]}, head(x_v="v9"))
    assert matches({"headers": [{"name": "x-v", "type": "Present"}]}, head(X_V=""))
    assert matches({"headers": [{"name": "x-v", "type": "Absent"}]}, head())
    assert not matches({"headers": [{"name": "x-v", "type": "Absent"}]}, head(x_v="1"))
    regex = [{"name": "x-v", "type": "RegularExpression", "value": "v[0-9]"}]
    assert matches({"headers": regex}, head(x_v="v3")) and not matches(
        {"headers": regex}, head(x_v="v3x")
    )
    q = [{"type": "Exact", "name": "user", "value": "a b"}]
    assert matches({"queryParams": q}, head("/?user=a+b&user=c")) and not matches(
        {"queryParams": q}, head("/?user=c&user=a+b")
    )
    qre = [{"type": "RegularExpression", "name": "id", "value": "[0-9]+"}]
    assert matches({"queryParams": qre}, head("/?id=42")) and not matches(
        {"queryParams": qre}, head("/")
    )
    both = {"method": "GET", "headers": hdr}  # every field must hold
    assert matches(both, head(x_v="v2")) and not matches(both, head(method="PUT", x_v="v2"))


def test_the_first_matching_rule_decides() -> None:
    router = Router([rule({"headers": [{"name": "x-v", "value": "v2"}]}), rule({})])
    assert router.match(head(x_v="v2")) == 0 and router.match(head()) == 1
    assert Router([rule({"method": "PUT"})]).match(head()) is None


def test_header_modifiers() -> None:
    headers = [(b"Host", b"a"), (b"X-A", b"1"), (b"x-a", b"2"), (b"x-b", b"3"), (b"x-c", b"4")]
    mod = HeaderModifier(set=(HeaderKV("x-a", "9"),), add=(HeaderKV("x-b", "5"),), remove=("x-c",))
    assert modify(headers, mod) == [(b"Host", b"a"), (b"x-b", b"3"), (b"x-a", b"9"), (b"x-b", b"5")]


def test_request_filters_change_what_goes_upstream() -> None:
    set_route = {"set": [{"name": "x-route", "value": "1"}]}
    to_v2 = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}
    seen = {"add": [{"name": "x-seen", "value": "yes"}]}
    r = rule(
        {"path": {"type": "PathPrefix", "value": "/api"}},
        {"type": "RequestHeaderModifier", "requestHeaderModifier": set_route},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "backend.internal", "path": to_v2}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": seen},
    )
    action = apply(r, head("/api/users?id=1", x_route="0"))
    sent = request_bytes(action.head)
    assert sent.startswith(b"GET /v2/users?id=1 HTTP/1.1\r\n")
    assert b"x-route: 1\r\n" in sent and b"x-route: 0" not in sent
    assert b"host: backend.internal\r\n" in sent and b"backend:8080" not in sent
    resp = ResponseParser(b"GET").feed(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")[0]
    assert isinstance(resp, ResponseHead)
    assert (b"x-seen", b"yes") in action.respond(resp).headers


@pytest.mark.parametrize(
    ("kind", "value", "target", "expected"),
    [
        ("ReplaceFullPath", "/new", "/api/x?q=1", "/new?q=1"),
        ("ReplacePrefixMatch", "/v2", "/api/x", "/v2/x"),
        ("ReplacePrefixMatch", "/", "/api/x", "/x"),
        ("ReplacePrefixMatch", "/", "/api", "/"),
        ("ReplacePrefixMatch", "/v2/", "/api", "/v2"),
    ],
)
def test_path_rewrites(kind: str, value: str, target: str, expected: str) -> None:
    field = "replaceFullPath" if kind == "ReplaceFullPath" else "replacePrefixMatch"
    r = rule(
        {"path": {"type": "PathPrefix", "value": "/api"}},
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": kind, field: value}}},
    )
    assert apply(r, head(target)).head.target == expected.encode()


def test_redirects() -> None:
    m = match(path={"type": "PathPrefix", "value": "/old"})

    def location(request: RequestHead, **r: Any) -> bytes:
        answer = redirect_response(request, msgspec.convert(r, RequestRedirect), m)
        assert answer.endswith(b"content-length: 0\r\n\r\n")
        return answer.split(b"location: ")[1].split(b"\r\n")[0]

    assert location(head("/old/a?x=1")) == b"http://backend:8080/old/a?x=1"
    assert location(head("/old/a"), scheme="https") == b"https://backend/old/a"
    assert location(head("/old/a"), scheme="https", port=8443) == b"https://backend:8443/old/a"
    assert location(head("/old"), hostname="example.com", port=80) == b"http://example.com/old"
    rewrite = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}
    assert location(head("/old/a"), path=rewrite) == b"http://backend:8080/new/a"
    answer = redirect_response(head(), RequestRedirect(status_code=301), m)
    assert answer.startswith(b"HTTP/1.1 301 Moved Permanently\r\n")
    r = rule({}, {"type": "RequestRedirect", "requestRedirect": {"statusCode": 308}})
    action = apply(r, head())
    assert action.status == 308 and action.redirect is not None


def test_a_mirror_copy_says_it_is_one() -> None:
    assert mirrored(head()).header(b"host") == b"backend-shadow:8080"


def test_a_request_changed_by_its_rule_stays_with_that_rule() -> None:
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/b"}},
    }
    router = Router([rule({"path": {"type": "Exact", "value": "/a"}}, rewrite),
                     rule({"path": {"type": "Exact", "value": "/b"}})])  # fmt: skip
    first = head("/a")
    assert router.match(first) == 0
    sent = apply(router.rules[0], first).head
    assert router.match(sent) == 1  # as a new request it would match the other rule
    router.pin(sent, 0)
    router.match(head("/b"))  # another request in between
    assert router.match(sent) == 0  # a retry of the rewritten request keeps its rule
