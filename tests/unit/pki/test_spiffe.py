from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.pki.spiffe import PkiError, SpiffeId, mesh_id, parse_spiffe_id, service_id

MESHES = st.from_regex(r"[a-z0-9._-]{1,30}", fullmatch=True)
SERVICES = st.text(min_size=1, max_size=60)


def test_usual_kuma_service_names_are_written_as_kuma_writes_them() -> None:
    assert service_id("default", "backend_kuma-demo_svc_8080") == (
        "spiffe://default/backend_kuma-demo_svc_8080"
    )
    assert mesh_id("default") == "spiffe://default"


def test_characters_outside_the_segment_alphabet_are_percent_encoded() -> None:
    uri = service_id("m", "a/b:c")
    assert uri == "spiffe://m/a%2Fb%3Ac"
    assert parse_spiffe_id(uri) == SpiffeId("m", "a/b:c")
    assert service_id("m", "..") == "spiffe://m/%2E%2E"


@given(MESHES, SERVICES)
def test_round_trip(mesh: str, service: str) -> None:
    uri = service_id(mesh, service)
    assert uri.isascii()
    assert parse_spiffe_id(uri) == SpiffeId(mesh, service)


@given(st.text(max_size=80))
def test_parse_raises_only_pki_error(text: str) -> None:
    try:
        parsed = parse_spiffe_id(text)
    except PkiError:
        return
    assert parsed.uri == text


@pytest.mark.parametrize(
    "uri",
    [
        "http://default/web",
        "spiffe://",
        "spiffe://Default/web",
        "spiffe://default/",
        "spiffe://default/a/b",
        "spiffe://default/%2f",  # lowercase hex is not the canonical spelling
        "spiffe://default/%41",  # "A" needs no escape
        "spiffe://default/a%zz",
        "spiffe://default/%FF",  # not UTF-8
        "spiffe://" + "a" * 2050,
    ],
)
def test_bad_or_non_canonical_ids_are_refused(uri: str) -> None:
    with pytest.raises(PkiError):
        parse_spiffe_id(uri)


def test_bad_mesh_and_empty_service_are_refused() -> None:
    with pytest.raises(PkiError, match="trust domain"):
        service_id("My Mesh", "web")
    with pytest.raises(PkiError, match="empty"):
        service_id("default", "")
