"""MeshLoadBalancingStrategy's `default`: algorithm, hashing and zone locality/failover."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meshfed.resources.errors import FieldError
from meshfed.resources.schema import (
    Bool,
    Custom,
    Decimalish,
    Duration,
    Enum,
    Int,
    ListOf,
    Obj,
    Str,
    join,
)
from meshfed.resources.types.policy_confs import DECIMAL_PERCENT, UINT32, by_type

_POSITIVE_U32 = Int(1, UINT32)


def _affinity_weights(obj: dict[str, Any], path: str) -> list[FieldError]:
    tags = obj.get("affinityTags")
    if not isinstance(tags, list):
        return []
    weighted = [t for t in tags if isinstance(t, dict) and t.get("weight") is not None]
    if weighted and len(weighted) != len(tags):
        return [
            FieldError(join(path, "affinityTags"), "all or none affinity tags should have weight")
        ]
    return []


def _zones_for_type(obj: dict[str, Any], path: str) -> list[FieldError]:
    kind, zones = obj.get("type"), obj.get("zones")
    has_zones = isinstance(zones, list) and len(zones) > 0
    if kind in ("Any", "None") and has_zones:
        return [FieldError(join(path, "zones"), f"must be empty when type is {kind}")]
    if kind in ("Only", "AnyExcept") and not has_zones:
        return [FieldError(join(path, "zones"), f"must not be empty when type is {kind}")]
    return []


_ZONE_NAMES = ListOf(Str(non_empty=True))
_CROSS_ZONE = Obj(
    {
        "failover": ListOf(
            Obj(
                {
                    "from": Obj(
                        {"zones": ListOf(Str(non_empty=True), min_items=1)}, required=("zones",)
                    ),
                    "to": Obj(
                        {"type": Enum("Any", "Only", "AnyExcept", "None"), "zones": _ZONE_NAMES},
                        required=("type",),
                        checks=(_zones_for_type,),
                    ),
                },
                required=("to",),
            )
        ),
        "failoverThreshold": Obj({"percentage": DECIMAL_PERCENT}, required=("percentage",)),
    }
)
_LOCALITY_AWARENESS = Obj(
    {
        "disabled": Bool(),
        "localZone": Obj(
            {
                "affinityTags": ListOf(
                    Obj({"key": Str(non_empty=True), "weight": _POSITIVE_U32}, required=("key",))
                )
            },
            checks=(_affinity_weights,),
        ),
        "crossZone": _CROSS_ZONE,
    }
)
_NAMED = Obj({"name": Str(non_empty=True)}, required=("name",))
_HASH_POLICIES = ListOf(
    Obj(
        {
            "type": Enum("Header", "Cookie", "Connection", "QueryParameter", "FilterState"),
            "terminal": Bool(),
            "header": _NAMED,
            "cookie": Obj(
                {
                    "name": Str(non_empty=True),
                    "ttl": Duration(),
                    "path": Str(pattern=r"/.*", message="must be an absolute path"),
                },
                required=("name",),
            ),
            "connection": Obj({"sourceIP": Bool()}),
            "queryParameter": _NAMED,
            "filterState": Obj({"key": Str(non_empty=True)}, required=("key",)),
        },
        required=("type",),
        checks=(
            by_type(
                "type",
                {
                    "Header": "header",
                    "Cookie": "cookie",
                    "Connection": "connection",
                    "QueryParameter": "queryParameter",
                    "FilterState": "filterState",
                },
                required=True,
            ),
        ),
    )
)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def _maglev_table(value: Any, path: str) -> list[FieldError]:
    errors = Int(1, 5000011).check(value, path)
    if not errors and not _is_prime(value):
        errors.append(FieldError(path, "must be a prime number"))
    return errors


def _ring_sizes(obj: dict[str, Any], path: str) -> list[FieldError]:
    low, high = obj.get("minRingSize"), obj.get("maxRingSize")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        return [FieldError(join(path, "minRingSize"), "must not be greater than maxRingSize")]
    return []


_LOAD_BALANCER = Obj(
    {
        "type": Enum("RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"),
        "roundRobin": Obj({}),
        "leastRequest": Obj(
            {"choiceCount": Int(2, UINT32), "activeRequestBias": Decimalish(Decimal(0))}
        ),
        "ringHash": Obj(
            {
                "hashFunction": Enum("XXHash", "MurmurHash2"),
                "minRingSize": Int(1, 8_000_000),
                "maxRingSize": Int(1, 8_000_000),
                "hashPolicies": _HASH_POLICIES,
            },
            checks=(_ring_sizes,),
        ),
        "random": Obj({}),
        "maglev": Obj({"tableSize": Custom(_maglev_table), "hashPolicies": _HASH_POLICIES}),
    },
    required=("type",),
    checks=(
        by_type(
            "type",
            {
                "RoundRobin": "roundRobin",
                "LeastRequest": "leastRequest",
                "RingHash": "ringHash",
                "Random": "random",
                "Maglev": "maglev",
            },
            required=False,
        ),
    ),
)
LOAD_BALANCING_CONF = Obj(
    {"localityAwareness": _LOCALITY_AWARENESS, "loadBalancer": _LOAD_BALANCER},
    at_least_one=("localityAwareness", "loadBalancer"),
)
