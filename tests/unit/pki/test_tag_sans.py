"""A dataplane's tags as `kuma://<tag>/<value>` URI SANs (Kuma's form): written only for tags a
Dataplane can have, read back by the proxies' DER reader, and anything else reads as no tag."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.der import certificate_facts
from meshfed.pki.leaf import issue_leaf, verify_peer
from meshfed.pki.spiffe import PkiError
from meshfed.pki.tag_sans import MAX_TAGS, parse_tag_uri, tag_uri, tag_uris, tags_of
from meshfed.pki.tls import peer_identity_of

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
CA = create_mesh_ca("default", now=NOW - dt.timedelta(days=1))


def test_a_leaf_carries_its_tags_beside_its_spiffe_id() -> None:
    tags = {("version", "v2"), ("kuma.io/zone", "zone-1"), ("env", "prod")}
    leaf = issue_leaf(CA, "web", now=NOW, tags=tags)
    uris = certificate_facts(leaf.cert.public_bytes(serialization.Encoding.DER)).uris
    assert uris == (
        "spiffe://default/web",
        "kuma://env/prod",
        "kuma://kuma.io/zone/zone-1",
        "kuma://version/v2",
    )
    # still one identity, verified as before
    assert peer_identity_of(uris) == "spiffe://default/web" == leaf.spiffe_id
    assert verify_peer([leaf.cert], CA, now=NOW) == "spiffe://default/web"
    assert tags_of(uris) == frozenset(tags)


def test_a_leaf_without_tags_has_only_its_identity() -> None:
    leaf = issue_leaf(CA, "web", now=NOW)
    uris = certificate_facts(leaf.cert.public_bytes(serialization.Encoding.DER)).uris
    assert uris == ("spiffe://default/web",)
    assert tags_of(uris) == frozenset()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kuma.io/service", "other"),  # the service is the SPIFFE ID: no second one
        ("version", "v/2"),  # a value holds no '/': it would read as another tag
        ("version", "*"),
        ("version", ""),
        ("", "v1"),
        ("ver sion", "v1"),
        ("version", "v1\n"),
        ("vérsion", "v1"),
    ],
)
def test_tags_a_dataplane_cannot_have_are_never_written(key: str, value: str) -> None:
    with pytest.raises(PkiError):
        tag_uri(key, value)
    with pytest.raises(PkiError):
        issue_leaf(CA, "web", now=NOW, tags=[("env", "prod"), (key, value)])


def test_too_many_tags_are_refused_when_written_and_ignored_when_read() -> None:
    many = [(f"t{i}", "v") for i in range(MAX_TAGS + 1)]
    with pytest.raises(PkiError, match="at most"):
        tag_uris(many)
    assert tags_of([f"kuma://t{i}/v" for i in range(MAX_TAGS + 1)]) == frozenset()


@pytest.mark.parametrize(
    "uri",
    [
        "kuma://kuma.io/service/admin",  # cannot claim a second service
        "kuma://version",
        "kuma:///v1",
        "kuma://version/",
        "kuma://version/v 1",
        "kuma://version/v1?x=1",
        "KUMA://version/v1",
        "spiffe://default/web",
        "https://version/v1",
    ],
)
def test_other_uris_read_as_no_tag(uri: str) -> None:
    assert parse_tag_uri(uri) is None
    assert tags_of([uri, "kuma://env/prod"]) == {("env", "prod")}


def test_keys_may_hold_slashes_values_may_not() -> None:
    assert parse_tag_uri("kuma://kuma.io/zone/us-east") == ("kuma.io/zone", "us-east")
    assert parse_tag_uri("kuma://a//b/c:d") == ("a//b", "c:d")
    assert tags_of(["kuma://version/v1", "kuma://version/v2"]) == {
        ("version", "v1"),
        ("version", "v2"),
    }


KEYS = st.from_regex(r"[a-zA-Z0-9.\-_:/]{1,20}", fullmatch=True).filter(
    lambda k: k != "kuma.io/service"
)
VALUES = st.from_regex(r"[a-zA-Z0-9.\-_:]{1,20}", fullmatch=True)


@given(KEYS, VALUES)
def test_every_dataplane_tag_round_trips(key: str, value: str) -> None:
    assert parse_tag_uri(tag_uri(key, value)) == (key, value)
