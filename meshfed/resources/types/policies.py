"""The Mesh* policies: Kuma's targetRef / from / to / default structure under `spec`."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor


def _policy(name: str, short: str, description: str) -> TypeDescriptor:
    return TypeDescriptor(
        name=name,
        plural=name.lower() + "s" if not name.endswith("y") else name.lower()[:-1] + "ies",
        scope=Scope.MESH,
        spec_wrapped=True,
        owner=Mode.GLOBAL,
        kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
        short_names=(short,),
        description=description,
    )


MESH_TRAFFIC_PERMISSION = _policy("MeshTrafficPermission", "mtp", "Who may call whom.")
MESH_TIMEOUT = _policy("MeshTimeout", "mt", "Connection and request timeouts.")
MESH_RETRY = _policy("MeshRetry", "mr", "Retries of failed requests and connections.")
MESH_HEALTH_CHECK = _policy("MeshHealthCheck", "mhc", "Active health checking of endpoints.")
MESH_CIRCUIT_BREAKER = _policy("MeshCircuitBreaker", "mcb", "Connection limits, outlier ejection.")
MESH_LOAD_BALANCING_STRATEGY = _policy(
    "MeshLoadBalancingStrategy", "mlbs", "Load balancing and cross-zone locality."
)

POLICIES: tuple[TypeDescriptor, ...] = (
    MESH_TRAFFIC_PERMISSION,
    MESH_TIMEOUT,
    MESH_RETRY,
    MESH_HEALTH_CHECK,
    MESH_CIRCUIT_BREAKER,
    MESH_LOAD_BALANCING_STRATEGY,
)
