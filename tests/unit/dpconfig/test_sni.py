from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meshfed.dpconfig.sni import SniError, SniTarget, decode_sni, encode_sni
from meshfed.proxy.clienthello import ClientHello, parse_client_hello
from tests.unit.proxy.hellos import real_hello

LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
# Kuma tag values ([a-zA-Z0-9.-_:/]) and anything else printable.
KUMA_SERVICE = st.from_regex(r"[a-zA-Z0-9_:/-]{1,12}(\.[a-zA-Z0-9_:/-]{1,12}){0,3}", fullmatch=True)
ANY_SERVICE = st.lists(
    st.text(PRINTABLE.filter(lambda c: c != "."), min_size=1, max_size=15), min_size=1, max_size=4
).map(".".join)
MESH = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True)


def encoded(service: str, mesh: str) -> str:
    try:
        return encode_sni(service, mesh)
    except SniError:
        assume(False)
        raise


def assert_dns_safe(sni: str) -> None:
    assert len(sni) <= 253
    for label in sni.split("."):
        assert LDH_LABEL.fullmatch(label), label


@pytest.mark.parametrize(
    ("service", "mesh", "sni"),
    [
        ("backend", "default", "backend.default.sni.mesh"),
        ("web.ns.svc", "default", "web.ns.svc.default.sni.mesh"),
        ("redis-2", "payments", "redis-2.payments.sni.mesh"),
    ],
)
def test_plain_names_stay_readable(service: str, mesh: str, sni: str) -> None:
    assert encode_sni(service, mesh) == sni
    assert decode_sni(sni) == SniTarget(service, mesh)


@pytest.mark.parametrize(
    ("service", "mesh"),
    [
        ("backend_kuma-demo_svc_8080", "default"),
        ("Backend", "default"),
        ("a/b:c", "m_1"),
        ("-x-", "my.mesh"),
        ("a--b", "default"),
        ("xn--nxasmq6b", "default"),  # looks like IDNA: must not be taken as plain
        ("e--abc", "default"),  # looks like our own escape
    ],
)
def test_other_names_are_escaped_reversibly(service: str, mesh: str) -> None:
    sni = encode_sni(service, mesh)
    assert_dns_safe(sni)
    assert decode_sni(sni) == SniTarget(service, mesh)


def test_escaped_names_keep_their_readable_letters() -> None:
    label = encode_sni("backend_kuma-demo_svc_8080", "default").split(".")[0]
    assert label.startswith("e--backendkumademosvc8080-")


def test_case_is_preserved_in_the_name_but_not_significant_in_the_sni() -> None:
    upper, lower = encode_sni("Backend", "default"), encode_sni("backend", "default")
    assert upper != lower
    assert decode_sni(upper.upper()) == SniTarget("Backend", "default")
    assert decode_sni(lower + ".") == SniTarget("backend", "default")


@pytest.mark.parametrize(
    ("service", "mesh", "message"),
    [
        ("", "default", "empty"),
        ("backend", "", "empty"),
        ("a..b", "default", "empty dot-separated part"),
        (".a", "default", "empty dot-separated part"),
        ("has space", "default", "printable ASCII"),
        ("caf\u00e9", "default", "printable ASCII"),
        ("a" * 64, "default", "does not fit one DNS label"),
        (".".join(["a" * 60] * 4), "default", "over 253"),
    ],
)
def test_names_that_cannot_be_an_sni(service: str, mesh: str, message: str) -> None:
    with pytest.raises(SniError, match=message):
        encode_sni(service, mesh)


@pytest.mark.parametrize(
    "sni",
    [
        "backend.default.mesh",  # a DNS name of the zone, not an SNI of ours
        "default.sni.mesh",  # no service
        "backend..default.sni.mesh",
        "-backend.default.sni.mesh",
        "back_end.default.sni.mesh",
        "e--backend-.default.sni.mesh",  # decodes to "backend": not the canonical spelling
        "e--.default.sni.mesh",
        "ab--c.default.sni.mesh",
        "e--!!!.default.sni.mesh",
        "e--99999999999.default.sni.mesh",  # punycode overflow
        "e--zca0000000a.default.sni.mesh",
        "a" * 64 + ".default.sni.mesh",
        "a." * 130 + "default.sni.mesh",
    ],
)
def test_foreign_or_non_canonical_snis_are_refused(sni: str) -> None:
    with pytest.raises(SniError):
        decode_sni(sni)


@given(KUMA_SERVICE, MESH)
def test_round_trip_kuma_style_names(service: str, mesh: str) -> None:
    sni = encoded(service, mesh)
    assert_dns_safe(sni)
    assert decode_sni(sni) == SniTarget(service, mesh)


@given(ANY_SERVICE, st.text(PRINTABLE, min_size=1, max_size=20))
def test_round_trip_any_printable_names(service: str, mesh: str) -> None:
    sni = encoded(service, mesh)
    assert_dns_safe(sni)
    assert decode_sni(sni) == SniTarget(service, mesh)


@given(st.text(max_size=80))
def test_decode_raises_only_sni_error(text: str) -> None:
    try:
        target = decode_sni(text)
    except SniError:
        return
    assert encode_sni(target.service, target.mesh) == text.lower().removesuffix(".")


@given(st.from_regex(r"(e--)?[a-z0-9-]{0,20}", fullmatch=True))
def test_decode_of_near_miss_labels_raises_only_sni_error(label: str) -> None:
    try:
        target = decode_sni(f"{label}.default.sni.mesh")
    except SniError:
        return
    assert encode_sni(*target) == f"{label}.default.sni.mesh"


@settings(max_examples=30)
@given(KUMA_SERVICE, MESH)
def test_a_real_tls_client_sends_it_and_the_parser_gets_it_back(service: str, mesh: str) -> None:
    sni = encoded(service, mesh)
    hello = parse_client_hello(real_hello(sni))
    assert isinstance(hello, ClientHello)
    assert decode_sni(hello.sni) == SniTarget(service, mesh)
