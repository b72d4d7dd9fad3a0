"""The Dataplane a sidecar announces in its Hello: from a file, inline text, or flags. Pure.

Sources, as kuma-dp takes them: `--dataplane-file` (YAML or JSON, Kuma's Universal shape) or
`--dataplane` (the same, inline); `--name` and `--mesh` override the document's. Without a
document, `--address` and one or more `--inbound PORT:SERVICE_PORT:SERVICE` flags make one.

Kuma keeps `reachableServices` under `networking.transparentProxying`. meshfed has no
transparent proxying (the sidecar listens on VIPs), so that block may hold only
`reachableServices`, which the sidecar takes out before the rest is validated as a
Dataplane, and sends beside it in its Hello: zone-cp then builds only those services'
outbounds. The sidecar also binds only those VIPs itself, in case its zone-cp is older and
sends every service. `--reachable-services` adds to it.

The sidecar checks here what it needs itself (the document's envelope: type, name, mesh,
labels, with the API's rules and messages; the inbound flags; the reachable services) and
leaves the spec to zone-cp, which validates the Hello with the API's validators and refuses a
bad one with BAD_REQUEST naming the field: mesh-dp then exits with that reason. Validating
the spec here would load pydantic into every sidecar (13 MiB of its 40 MB budget,
docs/architecture.md); the envelope is checked with `meshfed.resources.envelope` alone, not
the codec and the registry of every resource type (with the policy modules they import,
~0.6 MiB of every sidecar; decision 187).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshfed.dpconfig.protocol import reachable_problem
from meshfed.resources.envelope import envelope_errors, in_kuma_order
from meshfed.resources.fields import SERVICE_TAG

DEFAULT_MESH = "default"


class DataplaneError(ValueError):
    """The Dataplane given to mesh-dp is unusable; the message says where."""


@dataclass(frozen=True)
class DataplaneSpec:
    name: str
    mesh: str
    document: dict[str, Any]  # Kuma JSON, as sent in the Hello
    reachable: frozenset[str] | None  # None: every service


def parse_inbound_flag(text: str) -> dict[str, Any]:
    """`PORT:SERVICE_PORT:SERVICE` or `PORT:SERVICE` (the app listens on the same port)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise DataplaneError(
            f"--inbound {text!r}: expected PORT:SERVICE_PORT:SERVICE or PORT:SERVICE"
        )
    try:
        ports = [int(p) for p in parts[:-1]]
    except ValueError:
        raise DataplaneError(f"--inbound {text!r}: ports must be integers") from None
    inbound: dict[str, Any] = {"port": ports[0], "tags": {SERVICE_TAG: parts[-1]}}
    if len(ports) == 2:
        inbound["servicePort"] = ports[1]
    return inbound


def parse_services(text: str) -> frozenset[str]:
    """`a,b, c` -> {a, b, c}; empty items are ignored."""
    return frozenset(s.strip() for s in text.split(",") if s.strip())


def load_document(text: str, where: str) -> dict[str, Any]:
    """JSON (what `meshctl up` passes) is read with `json`; anything else with PyYAML,
    imported only then: its 19 modules cost each sidecar ~0.8 MiB (decision 184)."""
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataplaneError(f"{where} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataplaneError(f"{where} must be one Dataplane object")
    return data


def _take_reachable(doc: dict[str, Any]) -> frozenset[str] | None:
    networking = doc.get("networking")
    if not isinstance(networking, dict) or "transparentProxying" not in networking:
        return None
    block = networking.pop("transparentProxying")
    if not isinstance(block, dict):
        raise DataplaneError("networking.transparentProxying must be an object")
    others = sorted(k for k in block if k != "reachableServices")
    if others:
        raise DataplaneError(
            f"networking.transparentProxying.{others[0]}: not supported: sidecars listen on "
            "VIPs from the zone's DNS (only reachableServices is read here)"
        )
    services = block.get("reachableServices")
    if services is None:
        return None
    if not isinstance(services, list) or not all(isinstance(s, str) and s for s in services):
        raise DataplaneError(
            "networking.transparentProxying.reachableServices must be a list of service names"
        )
    return frozenset(services)


def build_dataplane(
    *,
    document: dict[str, Any] | None = None,
    name: str = "",
    mesh: str = "",
    address: str = "",
    inbounds: Sequence[str] = (),
    reachable: frozenset[str] | None = None,
) -> DataplaneSpec:
    """The validated Dataplane and the reachable services, from whichever sources are set."""
    if document is not None and inbounds:
        raise DataplaneError("give inbounds in the Dataplane document or as --inbound, not both")
    doc: dict[str, Any] = json.loads(json.dumps(document)) if document is not None else {}
    if document is None:
        if not inbounds or not address:
            raise DataplaneError(
                "no Dataplane: give --dataplane-file, --dataplane, or --address with "
                "--inbound PORT:SERVICE_PORT:SERVICE"
            )
        doc = {
            "networking": {
                "address": address,
                "inbound": [parse_inbound_flag(i) for i in inbounds],
            }
        }
        if not name:
            name = str(doc["networking"]["inbound"][0]["tags"][SERVICE_TAG])
    doc.setdefault("type", "Dataplane")
    if name:
        doc["name"] = name
    if mesh:
        doc["mesh"] = mesh
    doc.setdefault("mesh", DEFAULT_MESH)
    if address and document is not None:
        networking = doc.setdefault("networking", {})
        if isinstance(networking, dict):
            networking["address"] = address
    from_doc = _take_reachable(doc)
    if from_doc is not None or reachable is not None:
        reachable = (from_doc or frozenset()) | (reachable or frozenset())
        problem = reachable_problem(sorted(reachable))
        if problem is not None:  # zone-cp would refuse the Hello: say so at start
            raise DataplaneError(
                "reachable services (networking.transparentProxying.reachableServices, "
                f"--reachable-services): {problem}"
            )
    errors = envelope_errors(doc, "Dataplane", mesh_scoped=True)
    if errors:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        raise DataplaneError(f"not a valid Dataplane: {detail}")
    return DataplaneSpec(
        name=doc["name"], mesh=doc["mesh"], document=in_kuma_order(doc), reachable=reachable
    )
