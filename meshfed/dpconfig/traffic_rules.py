"""From matched MeshFaultInjections and MeshRateLimits to one inbound's InboundFaults and
InboundRateLimit (meshfed/dpconfig/traffic.py says what they mean; decision 128)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshfed.dpconfig.traffic import (
    DEFAULT_RATE_LIMIT_STATUS,
    Abort,
    Bandwidth,
    Delay,
    FaultRule,
    Faults,
    HttpFault,
    InboundFaults,
    InboundRateLimit,
    Rate,
    TaggedFaults,
)
from meshfed.policy.callers import caller_entries
from meshfed.policy.merge import merge_confs
from meshfed.policy.permissions import MatchType, SpiffeMatch
from meshfed.policy.rules import (
    Entry,
    Matched,
    callers_by_service,
    entries,
    inbound_conf,
    source_of,
)
from meshfed.resources.errors import ValidationError
from meshfed.resources.models.base import parse
from meshfed.resources.models.routes import FaultInjectionConf, RateLimitConf
from meshfed.resources.types.common import SERVICE_TAG, as_list

MESH_FAULT_INJECTION = "MeshFaultInjection"
MESH_RATE_LIMIT = "MeshRateLimit"


def _fault_list(conf: Any) -> Faults | None:
    """A `default`'s `http` list as HttpFaults; None when the entry does not set it."""
    if not isinstance(conf, dict) or conf.get("http") is None:
        return None
    try:
        model = parse(FaultInjectionConf, conf)
    except ValidationError:
        return None  # the API refused it; a store holding it anyway must not fail the build
    out: list[HttpFault] = []
    for fault in model.http or ():
        abort = delay = None
        if fault.abort is not None:
            abort = Abort(fault.abort.http_status, float(fault.abort.percentage))
        if fault.delay is not None:
            delay = Delay(fault.delay.value.total_seconds(), float(fault.delay.percentage))
        bandwidth = None
        if fault.response_bandwidth is not None:
            limit = fault.response_bandwidth.limit
            bandwidth = Bandwidth(
                bits_per_second(limit), float(fault.response_bandwidth.percentage)
            )
        out.append(HttpFault(abort=abort, delay=delay, response_bandwidth=bandwidth))
    return tuple(out)


_UNITS = {"k": 10**3, "M": 10**6, "G": 10**9}


def bits_per_second(limit: str) -> int:
    """A validated `responseBandwidth.limit` (`10kbps`, `50 Mbps`) in bits per second (SI)."""
    text = limit.replace(" ", "").removesuffix("bps")
    return max(1, min(int(text[:-1]) * _UNITS[text[-1]], 2**53))


def _matchers(raw: Any) -> tuple[SpiffeMatch, ...]:
    out: list[SpiffeMatch] = []
    for item in as_list(raw):
        spiffe = item.get("spiffeID") if isinstance(item, dict) else None
        if isinstance(spiffe, dict) and isinstance(spiffe.get("value"), str):
            try:
                out.append(SpiffeMatch(MatchType(str(spiffe.get("type"))), spiffe["value"]))
            except ValueError:
                continue
    return tuple(out)


def _add(sources: list[str], name: str) -> None:
    if name not in sources:
        sources.append(name)


def compile_faults(matched: Sequence[Matched], inbound: int, mesh: str) -> InboundFaults:
    """The MeshFaultInjections matched to a dataplane (rules.match) for one of its inbounds."""
    by_tags = caller_entries(matched, inbound)
    anyone = inbound_conf(matched, inbound, {})
    sources = list(anyone.sources)
    services: dict[str, Faults] = {}
    tagged = _tagged(by_tags)
    for _, e in by_tags:
        _add(sources, source_of(e.policy))
    for service in () if by_tags else callers_by_service(matched, inbound):
        merged = inbound_conf(matched, inbound, {SERVICE_TAG: service})
        faults = _fault_list(merged.conf)
        if faults is not None:
            services[service] = faults
        for name in merged.sources:
            _add(sources, name)
    rules: list[FaultRule] = []
    for m in matched:
        if inbound not in m.inbounds:
            continue
        for raw in as_list(m.policy.spec.get("rules")):
            faults = _fault_list(raw.get("default")) if isinstance(raw, dict) else None
            if faults is None:
                continue
            rules.append(FaultRule(faults, _matchers(raw.get("matches"))))
            _add(sources, source_of(m.policy))
    if not sources:
        return InboundFaults()
    return InboundFaults(
        mesh=mesh,
        default=None if by_tags else _fault_list(anyone.conf),
        services=services,
        rules=tuple(rules),
        sources=tuple(sources),
        tagged=tagged,
    )


def _tagged(by_tags: Sequence[tuple[dict[str, str], Entry]]) -> tuple[TaggedFaults, ...]:
    """The entries that set `http`, in merge order (callers named by tags)."""
    out: list[TaggedFaults] = []
    for required, e in by_tags:
        faults = _fault_list(e.default)
        if faults is not None:
            out.append(TaggedFaults(required, faults))
    return tuple(out)


def _headers(items: Any) -> tuple[tuple[str, str], ...]:
    return tuple((h.name, h.value) for h in items or ())


def compile_rate_limit(matched: Sequence[Matched], inbound: int) -> InboundRateLimit:
    """The MeshRateLimits matched to a dataplane for one of its inbounds: `from[]` (Mesh
    callers only) then `rules[]` (without matches) merged, least specific first."""
    chosen = [*entries(matched, "from", inbound), *entries(matched, "rules", inbound)]
    if not chosen:
        return InboundRateLimit()
    sources: list[str] = []
    for e in chosen:
        _add(sources, source_of(e.policy))
    try:
        conf = parse(RateLimitConf, merge_confs(e.default for e in chosen))
    except ValidationError:
        return InboundRateLimit(sources=tuple(sources))  # a merge Kuma's rules refuse: off
    http, tcp = conf.local.http, conf.local.tcp
    http_rate = tcp_rate = None
    status = DEFAULT_RATE_LIMIT_STATUS
    set_headers: tuple[tuple[str, str], ...] = ()
    add_headers: tuple[tuple[str, str], ...] = ()
    if http is not None and not http.disabled and http.request_rate is not None:
        r = http.request_rate
        http_rate = Rate(r.num, r.interval.total_seconds())
        on = http.on_rate_limit
        if on is not None:
            status = on.status or DEFAULT_RATE_LIMIT_STATUS
            if on.headers is not None:
                set_headers, add_headers = _headers(on.headers.set), _headers(on.headers.add)
    if tcp is not None and not tcp.disabled and tcp.connection_rate is not None:
        tcp_rate = Rate(tcp.connection_rate.num, tcp.connection_rate.interval.total_seconds())
    return InboundRateLimit(
        http=http_rate,
        status=status,
        set_headers=set_headers,
        add_headers=add_headers,
        tcp=tcp_rate,
        sources=tuple(sources),
    )
