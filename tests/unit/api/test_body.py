"""Body parsing without HTTP: content types, encodings, and values JSON cannot carry."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.api.body import parse_document
from meshfed.api.errors import ApiError


@pytest.mark.parametrize(
    ("raw", "content_type", "charset", "expected"),
    [
        (b'{"a": 1}', "application/json", None, {"a": 1}),
        (b'\xef\xbb\xbf{"a": 1}', "application/json", None, {"a": 1}),  # BOM from editors
        ('{"a": "é"}'.encode("latin-1"), "application/json", "latin-1", {"a": "é"}),
        (b"a: 1\n", "application/yaml", None, {"a": 1}),
        (b"a: 1\n---\n", "text/yaml", None, {"a": 1}),  # a trailing separator is no document
        (b"t: 2024-01-01T00:00:00Z\n", "application/yaml", None, {"t": "2024-01-01T00:00:00Z"}),
        (b'{"a": [1, 2.5, null, true]}', None, None, {"a": [1, 2.5, None, True]}),
        (b"a:\n  - b\n", None, None, {"a": ["b"]}),
    ],
)
def test_accepted(raw: bytes, content_type: str | None, charset: str | None, expected: Any) -> None:
    assert parse_document(raw, content_type, charset) == expected


@pytest.mark.parametrize(
    ("raw", "content_type", "charset", "message"),
    [
        (b'{"a": NaN}', "application/json", None, "NaN is not a JSON value"),
        (b"a: .inf\n", "application/yaml", None, "numbers must be finite"),
        (b"1: x\n", "application/yaml", None, "keys must be strings"),
        (b"? [1, 2]\n: x\n", "application/yaml", None, "unhashable key"),
        (b"a: !!binary aGVsbG8=\n", "application/yaml", None, "only JSON values"),
        (b"\xff\xfe", "application/json", None, "cannot be decoded"),
        (b"{}", "application/json", "no-such-charset", "cannot be decoded"),
        (b"   \n", "application/yaml", None, "empty"),
        (b"# only a comment\n", "application/yaml", None, "no YAML document"),
        (b"a: [1,\n", "application/yaml", None, "malformed YAML at line 2"),
        (b'{"a": 1,}', "application/json", None, "malformed JSON at line 1, column 9"),
    ],
)
def test_rejected(raw: bytes, content_type: str | None, charset: str | None, message: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_document(raw, content_type, charset)
    assert exc.value.status == 400
    assert message in exc.value.detail
