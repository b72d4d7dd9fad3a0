"""`meshctl export`: which types, which resources, and a file that apply reads back."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from meshctl.commands.export import clean, exported_types, render, write_private
from meshctl.documents import parse_documents
from meshfed.resources.types import default_registry


def test_only_the_globals_own_writable_types_are_exported_mesh_first() -> None:
    names = [d.name for d in exported_types(default_registry())]
    assert names[:3] == ["Mesh", "Zone", "Secret"]
    assert "MeshTimeout" in names and "MeshTrafficPermission" in names
    for excluded in ("ZoneInsight", "Dataplane", "ZoneIngress", "DataplaneInsight"):
        assert excluded not in names


def test_clean_drops_times_and_system_labels_and_skips_zone_resources() -> None:
    item = {
        "type": "MeshTimeout",
        "mesh": "default",
        "name": "t",
        "creationTime": "2024-01-01T00:00:00Z",
        "modificationTime": "2024-01-02T00:00:00Z",
        "labels": {"kuma.io/origin": "global", "team": "a"},
        "spec": {"targetRef": {"kind": "Mesh"}},
    }
    assert clean(item) == {
        "type": "MeshTimeout",
        "mesh": "default",
        "name": "t",
        "labels": {"team": "a"},
        "spec": {"targetRef": {"kind": "Mesh"}},
    }
    assert list(clean(item) or {}) == ["type", "mesh", "name", "labels", "spec"]
    bare = clean({"type": "Mesh", "name": "m", "labels": {"kuma.io/origin": "global"}})
    assert bare == {"type": "Mesh", "name": "m"}
    assert clean({"type": "Mesh", "name": "m", "labels": {"kuma.io/origin": "zone"}}) is None


def test_render_reads_back_as_the_same_documents() -> None:
    docs = [
        {"type": "Mesh", "name": "default"},
        {"type": "Secret", "mesh": "default", "name": "ca", "data": "QUJD"},
    ]
    text = render(docs, "http://127.0.0.1:7681")
    assert text.startswith("# meshctl export of http://127.0.0.1:7681: Mesh 1, Secret 1.")
    assert [d.data for d in parse_documents(text, "backup")] == docs
    empty = render([], "http://x")
    assert "nothing" in empty and parse_documents(empty, "backup") == []


def test_the_backup_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "backup.yaml"
    path.write_text("old")
    write_private(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["backup.yaml"]  # no temporary left
    with pytest.raises(OSError):
        write_private(tmp_path / "missing-dir" / "b.yaml", "x")
