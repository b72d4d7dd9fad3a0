"""MeshHealthCheck http: the check request and verdict (mesh_dp/http/health.py)."""

from __future__ import annotations

from mesh_dp.http.health import check_request, passed
from mesh_dp.http.parse import RequestHead, RequestParser
from meshfed.dpconfig.model import HttpCheck


def parsed(data: bytes) -> RequestHead:
    head = RequestParser().feed(data)[0]
    assert isinstance(head, RequestHead)
    return head


def test_defaults_are_get_slash_and_200() -> None:
    check = HttpCheck()
    head = parsed(check_request(check, "backend"))
    assert (head.method, head.target) == (b"GET", b"/")
    assert dict(head.headers)[b"host"] == b"backend"
    assert passed(check, 200) and not passed(check, 201) and not passed(check, 503)


def test_headers_to_add_set_replaces_and_add_appends() -> None:
    check = HttpCheck(
        path="/health",
        expected_statuses=(200, 201),
        set_headers=(("User-Agent", "probe"),),
        add_headers=(("x-a", "1"), ("x-a", "2")),
    )
    head = parsed(check_request(check, "backend"))
    assert head.target == b"/health"
    names = [(k.lower(), v) for k, v in head.headers]
    assert (b"user-agent", b"probe") in names
    assert [v for k, v in names if k == b"user-agent"] == [b"probe"]
    assert [v for k, v in names if k == b"x-a"] == [b"1", b"2"]
    assert passed(check, 201)


def test_control_characters_cannot_split_the_request() -> None:
    check = HttpCheck(path="/h\r\nx: y", add_headers=(("x-a", "1\r\nevil: 1"),))
    data = check_request(check, "backend")
    assert data.count(b"\r\n\r\n") == 1 and b"\r\nevil" not in data and b"\r\nx: y" not in data
    parsed(data)
