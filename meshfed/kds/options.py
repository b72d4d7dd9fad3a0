"""KDS options of global-cp and zone-cp, and the value parsers they need.

Each is a type alias a settings field is annotated with (`kds_insecure: KdsInsecure`), declared
once here so both programs spell, default and document them the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from meshfed.config import (
    Address,
    Option,
    parse_address,
    parse_bool,
    parse_optional_path,
    parse_size,
)
from meshfed.resources.envelope import check_name

GRPC_SCHEME = "grpc://"
GRPCS_SCHEME = "grpcs://"


def parse_zone_name(value: Any) -> str:
    """A zone name: it becomes a resource name and a label value, so the same rules apply."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ValueError("a zone name is required, e.g. --zone zone-1")
    problems = check_name(text, "zone")
    if problems:
        raise ValueError(problems[0].reason)
    if len(text) > 63:
        raise ValueError("must be at most 63 characters (it is used as a label value)")
    return text


def parse_grpc_target(value: Any) -> Address | None:
    """`grpcs://HOST:PORT` or `grpc://HOST:PORT` (the scheme may be omitted); empty means
    none (standalone). Both schemes are spellings of the same thing, Kuma's and meshfed's
    older one: KDS is TLS unless the zone is started with --kds-insecure."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    for scheme in (GRPCS_SCHEME, GRPC_SCHEME):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        if "://" in text:
            raise ValueError("expected grpcs://HOST:PORT")
    address = parse_address(text)
    if address.port == 0:
        raise ValueError("the port must not be 0 when dialing")
    return address


def grpc_url(address: Address | str, tls: bool = False) -> str:
    return (GRPCS_SCHEME if tls else GRPC_SCHEME) + str(address)


def parse_names(value: Any) -> tuple[str, ...]:
    """A comma-separated list (empty: none)."""
    text = str(value).strip() if value is not None else ""
    return tuple(part.strip() for part in text.split(",") if part.strip())


KdsMaxMessageBytes = Annotated[
    int,
    Option(
        parse_size,
        "10MiB",
        "Largest KDS message sent or received (as Kuma: 10 MiB); a resource over it is "
        "reported with its type and name and not synced",
        metavar="SIZE",
    ),
]

# -- TLS and zone tokens ----------------------------------------------------------------------

KdsInsecure = Annotated[
    bool,
    Option(
        parse_bool,
        False,
        "Plaintext KDS, no TLS: only for tests of the protocol itself (zone tokens are still "
        "required, but travel in clear)",
    ),
]

# global-cp
KdsTlsCert = Annotated[
    Path | None,
    Option(
        parse_optional_path,
        "",
        "PEM certificate chain the KDS port presents (with --kds-tls-key); re-read when it "
        "changes. Default: a certificate from the KDS CA the global keeps in its store",
        metavar="FILE",
    ),
]
KdsTlsKey = Annotated[
    Path | None,
    Option(parse_optional_path, "", "PEM private key of --kds-tls-cert", metavar="FILE"),
]
KdsTlsSan = Annotated[
    tuple[str, ...],
    Option(
        parse_names,
        "",
        "More host names or IP addresses for the certificate issued from the KDS CA "
        "(comma-separated; localhost, 127.0.0.1, ::1, this host's name and the bind address "
        "are always in it)",
        metavar="NAMES",
    ),
]
KdsCaOut = Annotated[
    Path | None,
    Option(
        parse_optional_path,
        "",
        "Write the KDS CA certificate (public) to this file at every start, for zones' "
        "--kds-ca-file. Default with the SQLite store: <data-dir>/kds-ca.crt",
        metavar="FILE",
    ),
]

# zone-cp
KdsCaFile = Annotated[
    Path | None,
    Option(
        parse_optional_path,
        "",
        "Trust only this CA (PEM) for the global's KDS certificate, e.g. the global's "
        "kds-ca.crt. Default: the system's trusted roots",
        metavar="FILE",
    ),
]
KdsTlsSkipVerify = Annotated[
    bool,
    Option(
        parse_bool,
        False,
        "Accept any certificate from the global (encrypted, not authenticated: anyone who can "
        "answer on the KDS address gets this zone's token). For tests and emergencies only",
    ),
]
ZoneTokenFile = Annotated[
    Path | None,
    Option(
        parse_optional_path,
        "",
        "File holding this zone's token (meshctl generate zone-token --zone NAME --scope kds); "
        "required with --global-kds, re-read at every connection",
        metavar="FILE",
    ),
]
