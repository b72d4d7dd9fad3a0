"""MeshAccessLog lines rendered from events (mesh_dp/accesslog_format.py) and the operator
grammar the API checks (meshfed/policy/observability.py)."""

from __future__ import annotations

import json
import re

import pytest

from mesh_dp.accesslog_format import Event, compile_format
from mesh_dp.http.parse import RequestHead, RequestParser
from meshfed.dpconfig.observability import LogFormat
from meshfed.policy.observability import FormatError, Op, access_log_formats, tokens

START = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


def head(raw: bytes) -> RequestHead:
    (h, *_) = RequestParser().feed(raw)
    assert isinstance(h, RequestHead)
    return h


def http_event(**kw: object) -> Event:
    e = Event(
        "outbound",
        "default",
        "web",
        "backend",
        START,
        0.0123,
        status=200,
        sent=512,
        upstream="127.0.0.1:8080",
        head=head(
            b"POST /a?b=1 HTTP/1.1\r\nHost: backend.mesh\r\nContent-Length: 3\r\n"
            b"X-Request-Id: r1\r\n\r\nabc"
        ),
        version="1.1",
    )
    for k, v in kw.items():
        setattr(e, k, v)
    return e


def tcp_event() -> Event:
    return Event("inbound", "default", "", "db", START, 2.5, sent=10, received=20, upstream="")


def test_tokens_split_text_and_operators() -> None:
    assert tokens("a %START_TIME% b %REQ(x-a?x-b):4% 100%% c") == [
        "a ",
        Op("START_TIME"),
        " b ",
        Op("REQ", "x-a?x-b", 4),
        " 100% c",
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("%RESPONSE_FLAGS%", "%RESPONSE_FLAGS% is not enforced"),
        ("%REQ%", "needs an argument"),
        ("%DURATION(x)%", "takes no argument"),
        ("50% done", "starts no command operator"),
    ],
)
def test_operators_the_sidecar_cannot_fill_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(FormatError, match=re.escape(fragment)):
        tokens(text)


def test_the_gate_names_each_bad_format_string() -> None:
    spec = {
        "to": [
            {
                "default": {
                    "backends": [
                        {"type": "File", "file": {"path": "/x", "format": {"plain": "%A%"}}},
                        {
                            "type": "Tcp",
                            "tcp": {
                                "address": "h:1",
                                "format": {"json": [{"key": "k", "value": "%B%"}]},
                            },
                        },
                    ]
                }
            }
        ]
    }
    assert [e.field for e in access_log_formats(spec)] == [
        "spec.to[0].default.backends[0].file.format.plain",
        "spec.to[0].default.backends[1].tcp.format.json[0].value",
    ]


def test_plain_renders_every_operator() -> None:
    fmt = compile_format(
        LogFormat(
            plain="%START_TIME% %KUMA_TRAFFIC_DIRECTION% %KUMA_MESH% %KUMA_SOURCE_SERVICE% "
            "%KUMA_DESTINATION_SERVICE% %RESPONSE_CODE% %DURATION% %BYTES_SENT% "
            "%BYTES_RECEIVED% %PROTOCOL% %UPSTREAM_HOST% %REQ(:METHOD)% %REQ(:PATH)% "
            "%REQ(:AUTHORITY)% %REQ(X-REQUEST-ID)% %REQ(user-agent)% %REQ(:PATH):2%"
        )
    )
    assert fmt(http_event()) == (
        "2026-01-01T00:00:00.250Z OUTBOUND default web backend 200 12 512 3 HTTP/1.1 "
        "127.0.0.1:8080 POST /a?b=1 backend.mesh r1 - /a"
    )


def test_tcp_events_have_no_http_values_and_omit_empty_values() -> None:
    text = "%KUMA_SOURCE_SERVICE%|%PROTOCOL%|%REQ(:PATH)%|%BYTES_RECEIVED%|%RESPONSE_CODE%"
    assert compile_format(LogFormat(plain=text))(tcp_event()) == "-|-|-|20|0"
    omit = LogFormat(plain=text, omit_empty_values=True)
    assert compile_format(omit)(tcp_event()) == "|||20|0"


def test_chunked_request_bytes_are_unknown() -> None:
    chunked = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    fmt = compile_format(LogFormat(plain="%BYTES_RECEIVED%"))
    assert fmt(http_event(head=chunked)) == "-"
    assert fmt(http_event(head=head(b"GET / HTTP/1.1\r\n\r\n"))) == "0"


def test_json_values_are_strings_and_missing_ones_null_or_omitted() -> None:
    pairs = (
        ("status", "%RESPONSE_CODE%"),
        ("route", "%KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE%"),
        ("agent", "%REQ(USER-AGENT)%"),
    )
    assert json.loads(compile_format(LogFormat(json=pairs))(http_event())) == {
        "status": "200",
        "route": "web->backend",
        "agent": None,
    }
    line = compile_format(LogFormat(json=pairs, omit_empty_values=True))(http_event())
    assert json.loads(line) == {"status": "200", "route": "web->backend"}
    assert "\n" not in line


def test_default_formats_are_kumas_for_http_and_tcp() -> None:
    fmt = compile_format(LogFormat())
    assert fmt(http_event()) == (
        '[2026-01-01T00:00:00.250Z] default "POST /a?b=1 HTTP/1.1" 200 3 512 12 "-" "-" "r1" '
        '"backend.mesh" "web" "backend" "127.0.0.1:8080"'
    )
    assert fmt(tcp_event()) == (
        "[2026-01-01T00:00:00.250Z] default (-)->-(db) took 2500ms, sent 10 bytes, "
        "received: 20 bytes"
    )


def test_values_cannot_break_the_line() -> None:
    bad = http_event(destination="a\nb")
    assert compile_format(LogFormat(plain="%KUMA_DESTINATION_SERVICE%"))(bad) == "a\\nb"
