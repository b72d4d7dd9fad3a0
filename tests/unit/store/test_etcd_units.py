"""The etcd store's pure parts, without etcd: key layout, stored records, endpoint and option
parsing, and the watch resume cursor."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.resources.model import Meta, Resource
from meshfed.store._etcd_conn import Endpoint, EtcdConnection, TlsFiles, parse_endpoints
from meshfed.store._etcd_keys import (
    KeyLayout,
    check_layout_marker,
    decode_value,
    encode_layout_marker,
    encode_value,
    prefix_range_end,
)
from meshfed.store._etcd_watch import ResumeCursor

# --- key layout ------------------------------------------------------------------------------


def test_keys_are_readable_and_documented_shape() -> None:
    layout = KeyLayout("/meshfed/")
    assert (
        layout.key("MeshTimeout", "default", "web") == b"/meshfed/resources/MeshTimeout/default/web"
    )
    assert layout.key("Mesh", "", "default") == b"/meshfed/resources/Mesh/_/default"
    assert layout.meta_key == b"/meshfed/meta" and layout.head_key == b"/meshfed/head"
    assert layout.mesh_prefix("MeshRetry", "m1") == b"/meshfed/resources/MeshRetry/m1/"


@pytest.mark.parametrize(
    ("type_", "mesh", "name"),
    [
        ("MeshTimeout", "default", "web"),
        ("Mesh", "", "default"),
        ("MeshTimeout", "_", "_"),
        ("MeshTimeout", "a/b", "c/d"),
        ("MeshTimeout", "%2F", "100%"),
        ("Weird/Type", "m", "\u4e2d\u6587"),
    ],
)
def test_keys_parse_back(type_: str, mesh: str, name: str) -> None:
    layout = KeyLayout("/p")
    key = layout.key(type_, mesh, name)
    assert layout.parse(key) == (type_, mesh, name)
    assert key.startswith(layout.mesh_prefix(type_, mesh))
    assert key.count(b"/") == 5  # separators only: parts never contain a raw "/"


def test_mesh_prefixes_do_not_overlap() -> None:
    layout = KeyLayout("/p")
    m1 = layout.mesh_prefix("T", "m1")
    assert not layout.key("T", "m10", "a").startswith(m1)
    assert not layout.key("T", "_", "a").startswith(layout.mesh_prefix("T", ""))


def test_foreign_keys_and_bad_prefixes_are_rejected() -> None:
    layout = KeyLayout("/p")
    for key in [b"/other/resources/T/m/n", b"/p/resources/T/m", b"/p/resources/T//n"]:
        with pytest.raises(ValueError):
            layout.parse(key)
    for prefix in ["", "/", "///"]:
        with pytest.raises(ValueError, match="prefix"):
            KeyLayout(prefix)


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/p/") == b"/p0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"


# --- stored records --------------------------------------------------------------------------


def test_record_round_trip_keeps_everything_but_the_version() -> None:
    res = Resource(
        "MeshTimeout",
        Meta(
            "web",
            "default",
            {"team": "a"},
            "2020-01-01T00:00:00Z",
            "2021-01-01T00:00:00Z",
            version="5",
        ),
        {"to": [{"x": "\u00e9"}]},
    )
    raw = encode_value(res)
    assert b'"version"' not in raw  # the version is the key's revision, never stored
    back = decode_value(("MeshTimeout", "default", "web"), raw, "7")
    assert back.meta.version == "7"
    back.meta.version = "5"
    assert back == res


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not a JSON document"),
        (b"[1]", "not a JSON object"),
        (b"\xff", "not a JSON document"),
        (b'{"labels": {"a": 1}, "spec": {}}', "labels must map"),
        (b'{"labels": {}, "spec": [], "creationTime": "", "modificationTime": ""}', "spec"),
        (b'{"labels": {}, "spec": {}, "modificationTime": ""}', "creationTime"),
    ],
)
def test_bad_records_are_named(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_value(("T", "m", "n"), raw, "1")


def test_layout_marker() -> None:
    check_layout_marker(encode_layout_marker())
    for raw in [b'{"layout": 2}', b"[]", b"junk", b""]:
        with pytest.raises(ValueError, match="unknown layout"):
            check_layout_marker(raw)


# --- endpoints and options -------------------------------------------------------------------


def test_endpoints() -> None:
    plain = parse_endpoints(" http://127.0.0.1:2379, etcd-2:2380 ")
    assert plain == [Endpoint("127.0.0.1", 2379, False), Endpoint("etcd-2", 2380, False)]
    assert parse_endpoints(["https://[::1]:2381/"]) == [Endpoint("::1", 2381, True)]
    assert parse_endpoints("http://etcd")[0].port == 2379
    assert parse_endpoints(["https://[::1]:2381"])[0].target == "[::1]:2381"
    assert str(parse_endpoints("etcd:1")[0]) == "http://etcd:1"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "no etcd endpoint"),
        (" , ", "no etcd endpoint"),
        ("ftp://etcd:1", "invalid etcd endpoint"),
        ("http://etcd:99999", "invalid etcd endpoint"),
        ("http://etcd:1/v3", "invalid etcd endpoint"),
        ("http://:1", "invalid etcd endpoint"),
        ("http://a:1,https://b:1", "mix http:// and https://"),
    ],
)
def test_bad_endpoints(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_endpoints(value)


def test_bad_connection_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="username and password"):
        EtcdConnection("http://a:1", username="root")
    with pytest.raises(ValueError, match="endpoints use http://"):
        EtcdConnection("http://a:1", tls=TlsFiles(ca_file=tmp_path / "ca.crt"))
    with pytest.raises(ValueError, match="cannot read etcd CA file"):
        EtcdConnection("https://a:1", tls=TlsFiles(ca_file=tmp_path / "missing.crt"))
    with pytest.raises(ValueError, match="certificate and key"):
        EtcdConnection("https://a:1", tls=TlsFiles(cert_file=tmp_path / "c.crt"))
    with pytest.raises(ValueError, match="timeout"):
        EtcdConnection("http://a:1", timeout=0)


# --- watch resume cursor ---------------------------------------------------------------------


def test_cursor_starts_where_asked() -> None:
    cursor = ResumeCursor(10)
    assert cursor.restart_revision() == 10
    assert not cursor.accept(9, b"k")  # never delivers before the start


def test_cursor_restarts_inside_a_partly_delivered_revision() -> None:
    cursor = ResumeCursor(1)
    assert cursor.accept(3, b"a") and cursor.accept(3, b"b")
    # The stream broke: revision 3 may have had more events, so start there again...
    assert cursor.restart_revision() == 3
    # ...and drop what was already delivered at it, and everything earlier.
    assert not cursor.accept(2, b"z")
    assert not cursor.accept(3, b"a") and not cursor.accept(3, b"b")
    assert cursor.accept(3, b"c")
    assert cursor.accept(4, b"a")
    assert not cursor.accept(4, b"a")


def test_cursor_progress_moves_past_quiet_revisions() -> None:
    cursor = ResumeCursor(1)
    cursor.accept(3, b"a")
    cursor.progress(8)  # etcd: everything through 8 was sent
    assert cursor.restart_revision() == 9
    cursor.progress(5)  # older news changes nothing
    assert cursor.restart_revision() == 9
    assert not cursor.accept(8, b"x")
