"""The API's HTTPS context: TLS 1.2 or later, and unusable files refused with a reason."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from meshfed.api.server import server_tls
from meshfed.auth.options import check_api_tls
from meshfed.config import ConfigError
from tests.unit.store.etcd_server import make_tls_files


def test_https_needs_tls_1_2_or_later(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    ctx = server_tls(tls.server_cert, tls.server_key)
    assert ctx is not None and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_tls(None, None) is None


def test_a_key_of_another_certificate_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    with pytest.raises(ValueError, match="cannot use the API TLS certificate"):
        server_tls(tls.server_cert, tls.client_key)
    with pytest.raises(ValueError, match="cannot use the API TLS certificate"):
        server_tls(tmp_path / "absent.crt", tls.server_key)


def test_both_or_neither() -> None:
    check_api_tls(None, None)
    check_api_tls(Path("c"), Path("k"))
    with pytest.raises(ConfigError, match="--api-tls-cert needs --api-tls-key"):
        check_api_tls(Path("c"), None)
    with pytest.raises(ConfigError, match="--api-tls-key needs --api-tls-cert"):
        check_api_tls(None, Path("k"))
