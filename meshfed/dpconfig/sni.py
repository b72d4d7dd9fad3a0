"""The DNS-safe SNI that names a service and its mesh on cross-zone connections.

Form: `<service labels>.<mesh label>.sni.mesh`, e.g. `backend.default.sni.mesh`.

- The service name is split at its dots, one label per part; the mesh is always one label.
  Framing from the right is therefore unambiguous: the label before `sni.mesh` is the mesh,
  everything left of it is the service.
- A part that already is a lowercase LDH label without `--` is used as is, so common names
  stay readable in logs. Any other part (uppercase, `_`, `:`, `/`, leading or doubled `-`,
  or a mesh name with dots) is written `e--<punycode>`: each character outside `[a-z0-9]` is
  first shifted by 0x80, then the string is punycode-encoded (RFC 3492, Python's codec).
  Punycode keeps `[a-z0-9]` in order and appends the rest as `[a-z0-9]` digits, so the label
  stays DNS-safe, partly readable (`backend_kuma-demo_svc_8080` ->
  `e--backendkumademosvc8080-<digits>`), and exactly reversible, case included.
- Decoding lowercases first (SNI compares case-insensitively) and only accepts the canonical
  spelling, so each (service, mesh) pair has exactly one SNI.
- Names are printable ASCII (Kuma tag values and resource names are); labels stay under 64
  bytes and the whole name under 254. A name that cannot fit is refused with SniError.
- A new format would take a new suffix, so both can be served during a migration.

The suffix differs from the zone DNS names (`<service>.mesh`, `<service>.<zone>.mesh`) so an
SNI is never mistaken for one of them.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

SUFFIX: Final = "sni.mesh"
MAX_NAME: Final = 253
MAX_LABEL: Final = 63
_ENCODED_PREFIX: Final = "e--"
_SHIFT: Final = 0x80
_BASIC: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_PLAIN_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_SUFFIX_LABELS: Final = tuple(SUFFIX.split("."))


class SniError(ValueError):
    """A name that cannot be expressed as an SNI, or an SNI that is not one of ours."""


class SniTarget(NamedTuple):
    service: str
    mesh: str


def encode_sni(service: str, mesh: str) -> str:
    """The SNI a sidecar sends to reach `service` of `mesh` through another zone's ingress."""
    _check_name(service, "service")
    _check_name(mesh, "mesh")
    parts = service.split(".")
    if any(not p for p in parts):
        raise SniError(f"service name {service!r} has an empty dot-separated part")
    labels = [_encode_label(p, "service") for p in parts]
    labels.append(_encode_label(mesh, "mesh"))
    sni = ".".join([*labels, SUFFIX])
    if len(sni) > MAX_NAME:
        raise SniError(f"SNI for service {service!r} would be {len(sni)} bytes, over {MAX_NAME}")
    return sni


def decode_sni(sni: str) -> SniTarget:
    """Inverse of `encode_sni`; anything else raises SniError."""
    if len(sni) > MAX_NAME + 1:
        raise SniError(f"SNI longer than {MAX_NAME} bytes")
    name = sni.lower().removesuffix(".")
    labels = name.split(".")
    n_suffix = len(_SUFFIX_LABELS)
    if len(labels) < n_suffix + 2 or tuple(labels[-n_suffix:]) != _SUFFIX_LABELS:
        raise SniError(f"{sni!r} is not a <service>.<mesh>.{SUFFIX} name")
    *service_labels, mesh_label = labels[:-n_suffix]
    service = ".".join(_decode_label(label) for label in service_labels)
    mesh = _decode_label(mesh_label)
    target = SniTarget(service, mesh)
    if encode_sni(service, mesh) != name:
        raise SniError(f"{sni!r} is not in canonical form")
    return target


def _check_name(value: str, what: str) -> None:
    if not value:
        raise SniError(f"{what} name is empty")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise SniError(f"{what} name {value!r} is not printable ASCII without spaces")


def _encode_label(text: str, what: str) -> str:
    if _PLAIN_RE.fullmatch(text) and "--" not in text:
        label = text
    else:
        shifted = "".join(c if c in _BASIC else chr(ord(c) + _SHIFT) for c in text)
        label = _ENCODED_PREFIX + shifted.encode("punycode").decode("ascii")
    if len(label) > MAX_LABEL:
        raise SniError(f"{what} name part {text!r} does not fit one DNS label ({len(label)} > 63)")
    return label


def _decode_label(label: str) -> str:
    if not label or len(label) > MAX_LABEL:
        raise SniError(f"bad label length in {label!r}")
    if "--" not in label:
        if not _PLAIN_RE.fullmatch(label):
            raise SniError(f"label {label!r} is not a DNS label")
        return label
    if not label.startswith(_ENCODED_PREFIX) or not label.isascii():
        raise SniError(f"label {label!r} is neither plain nor {_ENCODED_PREFIX}-encoded")
    try:
        shifted = label[len(_ENCODED_PREFIX) :].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, OverflowError, IndexError) as exc:
        raise SniError(f"label {label!r} is not valid punycode: {exc}") from None
    out = []
    for c in shifted:
        if c in _BASIC:
            out.append(c)
        elif 0x21 + _SHIFT <= ord(c) <= 0x7E + _SHIFT:
            out.append(chr(ord(c) - _SHIFT))
        else:
            raise SniError(f"label {label!r} decodes to a character outside the name alphabet")
    return "".join(out)
