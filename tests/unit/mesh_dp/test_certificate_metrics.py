"""The sidecar's certificate expiry gauge: seconds since the epoch, none without a leaf."""

from __future__ import annotations

import datetime as dt

import msgspec

from mesh_dp.stats import CertificateCollector
from mesh_dp.tlsconf import TlsContexts, build_contexts
from meshfed.proxy.promtext import go_float, render
from tests.unit.mesh_dp.test_tlsconf import TLS

NAME = "meshfed_dp_certificate_expiry_timestamp_seconds"


def text(contexts: TlsContexts | None) -> str:
    return render(CertificateCollector(lambda: contexts).collect()).decode()


def test_the_leaf_expiry_in_seconds_since_the_epoch() -> None:
    when = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC).timestamp()
    for stated in ("2030-01-01T12:00:00Z", "2030-01-01T12:00:00"):
        contexts = build_contexts(
            msgspec.structs.replace(TLS, expires_at=stated), "spiffe://default/web"
        )
        assert f'{NAME}{{identity="spiffe://default/web"}} {go_float(when)}\n' in text(contexts)


def test_no_series_without_a_certificate_or_with_an_unreadable_expiry() -> None:
    odd = build_contexts(msgspec.structs.replace(TLS, expires_at="soon"), "spiffe://default/web")
    for contexts in (None, odd):
        assert f"# TYPE {NAME} gauge\n" in text(contexts)
        assert f"{NAME}{{" not in text(contexts)
