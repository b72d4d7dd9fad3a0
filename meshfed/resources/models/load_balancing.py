"""MeshLoadBalancingStrategy's `default`: algorithm, hashing and zone locality/failover
(https://kuma.io/docs/latest/policies/meshloadbalancingstrategy/)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import (
    Choice,
    GoDuration,
    IntOrDecimal,
    Model,
    Range,
    Text,
    by_type,
    problem,
)
from meshfed.resources.models.common import UINT32, PositiveUint32

NonEmpty = Annotated[str, Text(non_empty=True)]
DEFAULT_CHOICE_COUNT = 2  # Kuma's LeastRequest default


class AffinityTag(Model):
    key: NonEmpty
    weight: PositiveUint32 | None = None


class LocalZone(Model):
    affinity_tags: list[AffinityTag] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        tags = data.get("affinityTags")
        if not isinstance(tags, list):
            return []
        weighted = [t for t in tags if isinstance(t, dict) and t.get("weight") is not None]
        if weighted and len(weighted) != len(tags):
            return [problem(("affinityTags",), "all or none affinity tags should have weight")]
        return []


class FailoverFrom(Model):
    zones: Annotated[list[NonEmpty], Field(min_length=1)]


class FailoverTo(Model):
    type: Annotated[Literal["Any", "Only", "AnyExcept", "None"], Choice()]
    zones: list[NonEmpty] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind, zones = data.get("type"), data.get("zones")
        has_zones = isinstance(zones, list) and len(zones) > 0
        if kind in ("Any", "None") and has_zones:
            return [problem(("zones",), f"must be empty when type is {kind}")]
        if kind in ("Only", "AnyExcept") and not has_zones:
            return [problem(("zones",), f"must not be empty when type is {kind}")]
        return []


class Failover(Model):
    from_: FailoverFrom | None = Field(None, alias="from")
    to: FailoverTo


class FailoverThreshold(Model):
    percentage: Annotated[Decimal, IntOrDecimal(Decimal(0), Decimal(100))]


class CrossZone(Model):
    failover: list[Failover] | None = None
    failover_threshold: FailoverThreshold | None = None


class LocalityAwareness(Model):
    disabled: bool = False
    local_zone: LocalZone | None = None
    cross_zone: CrossZone | None = None


class Named(Model):
    name: NonEmpty


class CookieHash(Model):
    name: NonEmpty
    ttl: Annotated[timedelta, GoDuration()] | None = None
    path: Annotated[str, Text(pattern=r"/.*", message="must be an absolute path")] | None = None


class ConnectionHash(Model):
    source_ip: bool | None = Field(None, alias="sourceIP")


class FilterStateHash(Model):
    key: NonEmpty


class HashPolicy(Model):
    type: Annotated[
        Literal["Header", "Cookie", "Connection", "QueryParameter", "FilterState"], Choice()
    ]
    terminal: bool | None = None
    header: Named | None = None
    cookie: CookieHash | None = None
    connection: ConnectionHash | None = None
    query_parameter: Named | None = None
    filter_state: FilterStateHash | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(
            data,
            "type",
            {
                "Header": "header",
                "Cookie": "cookie",
                "Connection": "connection",
                "QueryParameter": "queryParameter",
                "FilterState": "filterState",
            },
            required=True,
        )


class Empty(Model):
    pass


class LeastRequest(Model):
    choice_count: Annotated[int, Range(2, UINT32)] = DEFAULT_CHOICE_COUNT
    active_request_bias: Annotated[Decimal, IntOrDecimal(Decimal(0))] | None = None


class RingHash(Model):
    hash_function: Annotated[Literal["XXHash", "MurmurHash2"], Choice()] | None = None
    min_ring_size: Annotated[int, Range(1, 8_000_000)] | None = None
    max_ring_size: Annotated[int, Range(1, 8_000_000)] | None = None
    hash_policies: list[HashPolicy] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        low, high = data.get("minRingSize"), data.get("maxRingSize")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            return [problem(("minRingSize",), "must not be greater than maxRingSize")]
        return []


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


class Maglev(Model):
    table_size: Annotated[int, Range(1, 5000011), Field(description="a prime number")] | None = None
    hash_policies: list[HashPolicy] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        size = data.get("tableSize")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 5000011:
            return []  # the field's own type reports it
        if not _is_prime(size):
            return [problem(("tableSize",), "must be a prime number")]
        return []


LbType = Literal["RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"]


class LoadBalancer(Model):
    type: Annotated[LbType, Choice()]
    round_robin: Empty | None = None
    least_request: LeastRequest | None = None
    ring_hash: RingHash | None = None
    random: Empty | None = None
    maglev: Maglev | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(
            data,
            "type",
            {
                "RoundRobin": "roundRobin",
                "LeastRequest": "leastRequest",
                "RingHash": "ringHash",
                "Random": "random",
                "Maglev": "maglev",
            },
            required=False,
        )


class LoadBalancingConf(Model):
    """`to[].default` of MeshLoadBalancingStrategy."""

    at_least_one = ("localityAwareness", "loadBalancer")
    locality_awareness: LocalityAwareness | None = None
    load_balancer: LoadBalancer | None = None

    @property
    def algorithm(self) -> LbType:
        return self.load_balancer.type if self.load_balancer else "RoundRobin"

    @property
    def least_request_choices(self) -> int:
        lb = self.load_balancer
        if lb is None or lb.least_request is None:
            return DEFAULT_CHOICE_COUNT
        return lb.least_request.choice_count

    @property
    def locality_aware(self) -> bool:
        return self.locality_awareness is None or not self.locality_awareness.disabled
