"""A dataplane's tags in its certificate, as Kuma writes them: one URI SAN `kuma://<tag>/<value>`
per tag, beside the SPIFFE ID `spiffe://<mesh>/<service>` (Kuma's MADR 007,
https://github.com/kumahq/kuma/blob/master/docs/madr/decisions/007-mesh-traffic-permission.md).

The receiving sidecar reads them from the verified peer certificate to match `from[]` entries
that name callers by tags (`MeshSubset{version: v2}`); the control plane writes only the tags
it can vouch for (decision 152). The service is never a tag SAN: it is the SPIFFE ID, so a
`kuma://kuma.io/service/...` URI is refused when writing and ignored when reading.

Tag keys are `[a-zA-Z0-9.\\-_:/]+` and values `[a-zA-Z0-9.\\-_:]+` (a Dataplane's tag rules),
so a URI splits at its last `/` with no escaping; a URI outside those rules reads as no tag.
Pure, without `cryptography`: the sidecar imports it (decision 34).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from meshfed.pki.spiffe import PkiError

TAG_SCHEME: Final = "kuma://"
# carried by the SPIFFE ID, never a tag SAN (meshfed.resources.types.common imports the
# policy registry, which imports this module)
SERVICE_TAG: Final = "kuma.io/service"
_KEY = re.compile(r"[a-zA-Z0-9.\-_:/]+")
_VALUE = re.compile(r"[a-zA-Z0-9.\-_:]+")
# A certificate with more tags than this is not one the control plane issued.
MAX_TAGS: Final = 64

# (tag, value) pairs a peer's certificate vouches for; a tag may have several values (one per
# inbound), as in Kuma.
TagSet = frozenset[tuple[str, str]]
NO_TAGS: Final[TagSet] = frozenset()


def tag_uri(key: str, value: str) -> str:
    """`kuma://<key>/<value>`; PkiError for a tag a Dataplane cannot have, or the service."""
    if key == SERVICE_TAG:
        raise PkiError(f"{SERVICE_TAG} is the SPIFFE ID, not a tag SAN")
    if not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
        raise PkiError(f"tag {key!r}: {value!r} cannot be a tag SAN")
    return f"{TAG_SCHEME}{key}/{value}"


def tag_uris(tags: Iterable[tuple[str, str]]) -> list[str]:
    """The URI SANs of `tags`, sorted, each once (the certificate's bytes do not depend on the
    order inbounds were declared in)."""
    out = sorted({tag_uri(k, v) for k, v in tags})
    if len(out) > MAX_TAGS:
        raise PkiError(f"{len(out)} tags: at most {MAX_TAGS} fit in a certificate")
    return out


def parse_tag_uri(uri: str) -> tuple[str, str] | None:
    """(key, value) of one `kuma://` URI; None for any other URI or a malformed one."""
    if not uri.startswith(TAG_SCHEME):
        return None
    key, sep, value = uri[len(TAG_SCHEME) :].rpartition("/")
    if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
        return None
    if key == SERVICE_TAG:
        return None
    return key, value


def tags_of(uri_sans: Sequence[str]) -> TagSet:
    """The tags among a verified certificate's URI SANs; none when it has too many."""
    found = [t for t in map(parse_tag_uri, uri_sans) if t is not None]
    if len(found) > MAX_TAGS:
        return NO_TAGS
    return frozenset(found)
