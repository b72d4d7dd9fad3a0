"""The `default` blocks of the six policies, with Kuma's field names, enums and limits."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from meshfed.resources.errors import FieldError
from meshfed.resources.schema import (
    Bool,
    Check,
    Custom,
    Decimalish,
    Duration,
    Enum,
    Int,
    ListOf,
    Obj,
    Str,
    Unsupported,
    index,
    is_base64,
    join,
    one_of_text,
    parse_duration,
)
from meshfed.resources.types.common import NOT_SUPPORTED, TAGS

UINT32 = 2**32 - 1
PERCENT = Int(0, 100)
DECIMAL_PERCENT = Decimalish(Decimal(0), Decimal(100))
HEADER_NAME = Str(
    pattern=r"[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}",
    message="must be a valid HTTP header name",
)


def by_type(type_field: str, sub_fields: Mapping[str, str], *, required: bool) -> Check:
    """Ties a type-specific block to its type: `ringHash` only with `type: RingHash`."""

    def check(obj: dict[str, Any], path: str) -> list[FieldError]:
        chosen = obj.get(type_field)
        errors: list[FieldError] = []
        for type_value, field in sub_fields.items():
            present = obj.get(field) is not None
            if present and chosen != type_value:
                errors.append(
                    FieldError(
                        join(path, field), f"can only be set when {type_field} is {type_value}"
                    )
                )
            elif required and not present and chosen == type_value:
                errors.append(
                    FieldError(join(path, field), f"is required when {type_field} is {type_value}")
                )
        return errors

    return check


# --- MeshTrafficPermission ----------------------------------------------------------------

MTP_FROM_CONF = Obj({"action": Enum("Allow", "Deny", "AllowWithShadowDeny")}, required=("action",))
_SPIFFE_MATCH = Obj(
    {
        "type": Enum("Exact", "Prefix"),
        "value": Str(
            pattern=r"spiffe://[^/\s]+(/\S*)?", message="must be a SPIFFE ID (spiffe://...)"
        ),
    },
    required=("type", "value"),
)
_MATCHES = ListOf(
    Obj(
        {
            "spiffeID": _SPIFFE_MATCH,
            "sni": Unsupported(f"{NOT_SUPPORTED}: callers are matched by their SPIFFE ID"),
        },
        required=("spiffeID",),
    ),
    min_items=1,
)
MTP_RULE_CONF = Obj(
    {"allow": _MATCHES, "deny": _MATCHES, "allowWithShadowDeny": _MATCHES},
    at_least_one=("allow", "deny", "allowWithShadowDeny"),
)

# --- MeshTimeout ---------------------------------------------------------------------------

_HTTP_TIMEOUTS = (
    "requestTimeout",
    "streamIdleTimeout",
    "maxStreamDuration",
    "maxConnectionDuration",
    "requestHeadersTimeout",
)
TIMEOUT_CONF = Obj(
    {
        "connectionTimeout": Duration(positive=True),
        "idleTimeout": Duration(),
        "http": Obj({f: Duration() for f in _HTTP_TIMEOUTS}, at_least_one=_HTTP_TIMEOUTS),
    },
    at_least_one=("connectionTimeout", "idleTimeout", "http"),
)

# --- MeshRetry -----------------------------------------------------------------------------


def _interval_order(obj: dict[str, Any], path: str) -> list[FieldError]:
    base, top = obj.get("baseInterval"), obj.get("maxInterval")
    if not (isinstance(base, str) and isinstance(top, str)):
        return []
    base_ns, top_ns = parse_duration(base), parse_duration(top)
    if base_ns is not None and top_ns is not None and top_ns < base_ns:
        return [FieldError(join(path, "maxInterval"), "must not be less than baseInterval")]
    return []


_BACKOFF = Obj(
    {"baseInterval": Duration(positive=True), "maxInterval": Duration(positive=True)},
    at_least_one=("baseInterval", "maxInterval"),
    checks=(_interval_order,),
)
_RATE_LIMITED_BACKOFF = Obj(
    {
        "resetHeaders": ListOf(
            Obj(
                {"name": HEADER_NAME, "format": Enum("Seconds", "UnixTimestamp")},
                required=("name", "format"),
            ),
            min_items=1,
        ),
        "maxInterval": Duration(positive=True),
    },
    required=("resetHeaders",),
)
_HTTP_RETRY_ON_NAMES = (
    "5xx",
    "GatewayError",
    "Reset",
    "Retriable4xx",
    "ConnectFailure",
    "EnvoyRatelimited",
    "RefusedStream",
    "Http3PostConnectFailure",
    "HttpMethodConnect",
    "HttpMethodDelete",
    "HttpMethodGet",
    "HttpMethodHead",
    "HttpMethodOptions",
    "HttpMethodPatch",
    "HttpMethodPost",
    "HttpMethodPut",
    "HttpMethodTrace",
)


def _http_retry_on(value: Any, path: str) -> list[FieldError]:
    # Kuma's docs spell the first one "5XX", its code "5xx": accept both.
    if isinstance(value, str) and (value in _HTTP_RETRY_ON_NAMES or value == "5XX"):
        return []
    if isinstance(value, str) and value.isdigit() and 100 <= int(value) <= 599:
        return []
    return [
        FieldError(
            path,
            one_of_text(_HTTP_RETRY_ON_NAMES) + ', or an HTTP status code as a string (e.g. "503")',
        )
    ]


_HEADER_MATCH = Obj(
    {
        "type": Enum("Exact", "Present", "RegularExpression", "Absent", "Prefix"),
        "name": HEADER_NAME,
        "value": Str(),
    },
    required=("name",),
)


def _predicate_fields(obj: dict[str, Any], path: str) -> list[FieldError]:
    kind = obj.get("predicate")
    errors: list[FieldError] = []
    if kind == "OmitHostsWithTags" and obj.get("tags") is None:
        errors.append(
            FieldError(join(path, "tags"), "is required when predicate is OmitHostsWithTags")
        )
    if kind != "OmitHostsWithTags" and obj.get("tags") is not None:
        errors.append(
            FieldError(join(path, "tags"), "can only be set when predicate is OmitHostsWithTags")
        )
    if kind == "OmitPreviousPriorities" and obj.get("updateFrequency") is None:
        errors.append(
            FieldError(
                join(path, "updateFrequency"),
                "is required when predicate is OmitPreviousPriorities",
            )
        )
    if kind != "OmitPreviousPriorities" and obj.get("updateFrequency") is not None:
        errors.append(
            FieldError(
                join(path, "updateFrequency"),
                "can only be set when predicate is OmitPreviousPriorities",
            )
        )
    return errors


_PREDICATES = ListOf(
    Obj(
        {
            "predicate": Enum("OmitPreviousHosts", "OmitHostsWithTags", "OmitPreviousPriorities"),
            "tags": TAGS,
            "updateFrequency": Int(1, 2**31 - 1),
        },
        required=("predicate",),
        checks=(_predicate_fields,),
    )
)


def _host_selection(value: Any, path: str) -> list[FieldError]:
    errors = _PREDICATES.check(value, path)
    if isinstance(value, list):
        priorities = [
            i
            for i, p in enumerate(value)
            if isinstance(p, dict) and p.get("predicate") == "OmitPreviousPriorities"
        ]
        for i in priorities[1:]:
            errors.append(
                FieldError(
                    join(index(path, i), "predicate"),
                    "OmitPreviousPriorities must only be specified once",
                )
            )
    return errors


_HTTP_RETRY_FIELDS = (
    "numRetries",
    "perTryTimeout",
    "backOff",
    "rateLimitedBackOff",
    "retryOn",
    "retriableResponseHeaders",
    "retriableRequestHeaders",
    "hostSelection",
)
_GRPC_RETRY_FIELDS = ("numRetries", "perTryTimeout", "backOff", "rateLimitedBackOff", "retryOn")
RETRY_CONF = Obj(
    {
        "tcp": Obj({"maxConnectAttempt": Int(1, UINT32)}, required=("maxConnectAttempt",)),
        "http": Obj(
            {
                "numRetries": Int(0, UINT32),
                "perTryTimeout": Duration(),
                "backOff": _BACKOFF,
                "rateLimitedBackOff": _RATE_LIMITED_BACKOFF,
                "retryOn": ListOf(Custom(_http_retry_on)),
                "retriableResponseHeaders": ListOf(_HEADER_MATCH),
                "retriableRequestHeaders": ListOf(_HEADER_MATCH),
                "hostSelection": Custom(_host_selection),
                "hostSelectionMaxAttempts": Int(0, 2**63 - 1),
            },
            at_least_one=_HTTP_RETRY_FIELDS,
        ),
        "grpc": Obj(
            {
                "numRetries": Int(0, UINT32),
                "perTryTimeout": Duration(),
                "backOff": _BACKOFF,
                "rateLimitedBackOff": _RATE_LIMITED_BACKOFF,
                "retryOn": ListOf(
                    Enum(
                        "Canceled",
                        "DeadlineExceeded",
                        "Internal",
                        "ResourceExhausted",
                        "Unavailable",
                    )
                ),
            },
            at_least_one=_GRPC_RETRY_FIELDS,
        ),
    },
    at_least_one=("tcp", "http", "grpc"),
)

# --- MeshHealthCheck -----------------------------------------------------------------------

_BASE64 = Str(predicate=is_base64, message="must be base64-encoded")
_HEADER_VALUES = ListOf(Obj({"name": HEADER_NAME, "value": Str()}, required=("name", "value")))
HEALTH_CHECK_CONF = Obj(
    {
        "interval": Duration(positive=True),
        "timeout": Duration(positive=True),
        "unhealthyThreshold": Int(1, 2**31 - 1),
        "healthyThreshold": Int(1, 2**31 - 1),
        "initialJitter": Duration(positive=True),
        "intervalJitter": Duration(positive=True),
        "intervalJitterPercent": PERCENT,
        "healthyPanicThreshold": DECIMAL_PERCENT,
        "failTrafficOnPanic": Bool(),
        "noTrafficInterval": Duration(positive=True),
        "eventLogPath": Str(non_empty=True),
        "alwaysLogHealthCheckFailures": Bool(),
        "reuseConnection": Bool(),
        "tcp": Obj({"disabled": Bool(), "send": _BASE64, "receive": ListOf(_BASE64)}),
        "http": Obj(
            {
                "disabled": Bool(),
                "path": Str(non_empty=True),
                "requestHeadersToAdd": Obj({"set": _HEADER_VALUES, "add": _HEADER_VALUES}),
                "expectedStatuses": ListOf(Int(100, 599)),
            }
        ),
        "grpc": Obj({"disabled": Bool(), "serviceName": Str(), "authority": Str()}),
    },
    at_least_one=("http", "tcp", "grpc"),
)

# --- MeshCircuitBreaker --------------------------------------------------------------------

_POSITIVE_U32 = Int(1, UINT32)
_CONSECUTIVE = Obj({"consecutive": _POSITIVE_U32})
_DETECTORS = (
    "totalFailures",
    "gatewayFailures",
    "localOriginFailures",
    "successRate",
    "failurePercentage",
)
CIRCUIT_BREAKER_CONF = Obj(
    {
        "connectionLimits": Obj(
            {
                "maxConnections": _POSITIVE_U32,
                "maxConnectionPools": _POSITIVE_U32,
                "maxPendingRequests": _POSITIVE_U32,
                "maxRetries": _POSITIVE_U32,
                "maxRequests": _POSITIVE_U32,
            }
        ),
        "outlierDetection": Obj(
            {
                "disabled": Bool(),
                "interval": Duration(positive=True),
                "baseEjectionTime": Duration(positive=True),
                "maxEjectionPercent": PERCENT,
                "splitExternalAndLocalErrors": Bool(),
                "healthyPanicThreshold": DECIMAL_PERCENT,
                "detectors": Obj(
                    {
                        "totalFailures": _CONSECUTIVE,
                        "gatewayFailures": _CONSECUTIVE,
                        "localOriginFailures": _CONSECUTIVE,
                        "successRate": Obj(
                            {
                                "minimumHosts": _POSITIVE_U32,
                                "requestVolume": _POSITIVE_U32,
                                "standardDeviationFactor": Decimalish(
                                    Decimal(0), exclusive_min=True
                                ),
                            }
                        ),
                        "failurePercentage": Obj(
                            {
                                "minimumHosts": _POSITIVE_U32,
                                "requestVolume": _POSITIVE_U32,
                                "threshold": PERCENT,
                            }
                        ),
                    },
                    at_least_one=_DETECTORS,
                ),
            }
        ),
    },
    at_least_one=("connectionLimits", "outlierDetection"),
)
