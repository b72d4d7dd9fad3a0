"""An outbound listener: accept the application's connection, pick an endpoint, originate
mTLS, relay.

Per accepted connection:

1. MeshCircuitBreaker `maxConnections`: at the cap, the connection is closed at once
   (counted as overflow).
2. Up to MeshRetry `tcp.maxConnectAttempt` attempts, each on an endpoint the balancer picks
   among those not tried yet for this connection. One attempt is a TCP connect plus, with
   mTLS, the handshake (SNI = the endpoint's `sni` when it is another zone's ingress) and
   the check that the server is `spiffe://<mesh>/<service>`; MeshTimeout
   `connectionTimeout` bounds the whole attempt. A failed attempt marks the endpoint
   (passive ejection, see balancer.py) and moves on.
3. Relay both ways; MeshTimeout `idleTimeout` closes the connection after that long
   without a byte.

With a MeshTCPRoute the outbound has `splits`: before step 2 each new connection draws one
split by weight (balancer.pick_split) and steps 2-3 use that split's endpoints, its own
balancer (state kept per split across updates) and its service's identity in the check. On
an http outbound the split is drawn per request instead (Kuma applies a MeshTCPRoute to an
HTTP service when no MeshHTTPRoute does, and Envoy draws weighted clusters per request); a
retry first looks in the split of its earlier attempts. Health checks and outlier detection
cover every split's endpoints.

The application's bytes wait in the kernel (reading is paused) until the upstream is
ready, so nothing is lost or duplicated across attempts.

MeshHealthCheck runs here too: each `interval`, every endpoint gets a check (an HTTP GET
over mTLS for an http outbound with an `http` check, mesh_dp/http/health.py; else a TCP
connect), and the balancer's thresholds turn results into healthy/unhealthy.

An outbound whose protocol is `http` parses instead (mesh_dp/http/proxy.py): the steps
above happen per request, not per connection, on pooled keep-alive upstream connections;
`_Cluster` is that pipeline's view of this listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import ssl
import time
from collections.abc import Callable, Hashable, Sequence

from mesh_dp.balancer import Balancer, EndpointState, pick_split
from mesh_dp.http import health
from mesh_dp.http.accesslog import Record
from mesh_dp.http.attempt import RequestPolicy
from mesh_dp.http.conn import Conn
from mesh_dp.http.hashing import CALLER, peer_host, request_hash
from mesh_dp.http.headers import request_bytes
from mesh_dp.http.limits import Caps, Limits
from mesh_dp.http.outlier import OutlierDetector
from mesh_dp.http.parse import RequestHead, RequestParser, ResponseParser
from mesh_dp.http.pool import Pool
from mesh_dp.http.proxy import HttpProxy
from mesh_dp.http.retry import RetryPolicy
from mesh_dp.http.route import Action, Router, apply, mirrored
from mesh_dp.http.timeouts import HttpTimeouts
from mesh_dp.relay import Link, Side, describe
from mesh_dp.stats import OutboundStats
from mesh_dp.tlsconf import TlsContexts
from meshfed.aio import wait_for
from meshfed.dpconfig.model import HealthCheck, Outbound, OutboundPolicies, Split
from meshfed.pki.spiffe import PkiError, service_id
from meshfed.pki.tls import check_peer_id

log = logging.getLogger("mesh_dp.outbound")


class _Accepted(Side):
    def __init__(self, listener: OutboundListener) -> None:
        super().__init__(downstream=True, counter=listener.stats.bytes)
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # paused until linked
        self.listener.accepted(self)


class _HttpAccepted(Conn):
    def __init__(self, listener: OutboundListener) -> None:
        super().__init__(RequestParser(), counter=listener.stats.bytes)
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.listener.accepted_http(self)


class _Probe(asyncio.Protocol):
    pass


def _factory(protocol: asyncio.Protocol) -> Callable[[], asyncio.Protocol]:
    return lambda: protocol


def _caps(p: OutboundPolicies) -> Caps:
    return Caps(p.max_pending_requests, p.max_requests, p.max_retries, p.max_connection_pools)


class _Cluster:
    """The HTTP pipeline's view of an outbound: its balancer, policies, pool, request limits
    and outlier detection (fed by connects and answers; its interval work runs on the first
    result after each `interval`, so an idle outbound costs nothing)."""

    def __init__(self, listener: OutboundListener) -> None:
        self.listener = listener
        self.pool = Pool()
        self.limits = Limits(_caps(listener.outbound.policies))
        self.pool.on_free = self.limits.freed
        self.outlier: OutlierDetector | None = None
        self._next_tick = 0.0
        self._policy: tuple[OutboundPolicies, RequestPolicy] | None = None

    def update(self, policies: OutboundPolicies) -> None:
        """New policies or endpoints: limits and outlier settings from the next request."""
        self.limits.caps = _caps(policies)
        states = self.listener.all_states()
        if policies.outlier is None:
            self.outlier = None
            for s in states:
                s.outlier_until = 0.0
        elif self.outlier is None:
            self.outlier = OutlierDetector(policies.outlier, [s.key for s in states])
            self._next_tick = self.listener.clock() + policies.outlier.interval
        else:
            self.outlier.update(policies.outlier, [s.key for s in states])

    def _outlier_result(self, endpoint: EndpointState, status: int | None, ok: bool) -> None:
        od = self.outlier
        if od is None:
            return
        now = self.listener.clock()
        ejected: list[Hashable]
        if status is None:
            ejected = [endpoint.key] if od.local(endpoint.key, ok, now) else []
        else:
            ejected = [endpoint.key] if od.response(endpoint.key, status, now) else []
        if now >= self._next_tick:
            self._next_tick = now + od.config.interval
            ejected += od.tick(now)
        for state in self.listener.all_states():
            record = od.hosts.get(state.key)
            if record is not None:
                state.outlier_until = record.ejected_until
        for key in ejected:
            self.listener.stats.http.ejections += 1
            log.warning(
                "outbound %s: endpoint %s ejected (outlier detection) until +%.1fs",
                self.listener.name,
                key,
                od.hosts[key].ejected_until - now,
            )

    @property
    def name(self) -> str:
        return self.listener.outbound.service

    def policy(self) -> RequestPolicy:
        p = self.listener.outbound.policies
        if self._policy is None or self._policy[0] is not p:
            self._policy = p, request_policy(p)
        return self._policy[1]

    def choose(self, request: RequestHead, tried: Sequence[EndpointState]) -> EndpointState | None:
        listener = self.listener
        key = request_hash(listener.outbound.policies.hash.policies, request, CALLER.get())
        route = listener.route(tried[0] if tried else None, request)
        return None if route is None else route[1].choose(listener.clock(), tried, key)

    async def open(self, endpoint: EndpointState, timeout: float) -> Conn:
        listener = self.listener
        listener.balancer.attempt(endpoint)
        conn = Conn(None)
        service = listener.service_of(endpoint)
        await wait_for(listener.open(endpoint, listener.outbound, lambda: conn, service), timeout)
        return conn

    def connect_failed(self, endpoint: EndpointState) -> None:
        self.listener.balancer.connect_failed(endpoint, self.listener.clock())
        self.listener.stats.http.ejections += 1
        self._outlier_result(endpoint, None, ok=False)

    def connect_succeeded(self, endpoint: EndpointState) -> None:
        self.listener.balancer.connect_succeeded(endpoint)
        self._outlier_result(endpoint, None, ok=True)

    def finished(self, endpoint: EndpointState, status: int) -> None:
        if status == 0:  # no answer: a local-origin failure
            self._outlier_result(endpoint, None, ok=False)
            return
        endpoint.requests += 1
        if status >= 500:
            endpoint.server_errors += 1
        self._outlier_result(endpoint, status, ok=True)


def request_policy(p: OutboundPolicies) -> RequestPolicy:
    """What the HTTP pipeline enforces per request, from the outbound's policies."""
    r = p.http_retry
    return RequestPolicy(
        connect_timeout=p.connect_timeout,
        max_connect_attempts=p.max_connect_attempts,
        response_timeout=p.idle_timeout,
        max_connections=p.max_connections,
        timeouts=HttpTimeouts(
            request=p.request_timeout,
            stream_idle=p.stream_idle_timeout,
            max_stream=p.max_stream_duration,
            max_connection=p.max_connection_duration,
            request_headers=p.request_headers_timeout,
        ),
        retry=RetryPolicy.from_retry_on(
            r.retry_on,
            num_retries=r.num_retries,
            per_try_timeout=r.per_try_timeout,
            base_interval=r.base_interval,
            max_interval=r.max_interval,
        ),
    )


SplitKey = tuple[int, str, str | None]  # position, service, pinned zone
# MeshHTTPRoute: rule, position (-1 - f: the mirror of the rule's filter f), service, zone
RuleKey = tuple[int, int, str, str | None]


def _split_key(i: int, split: Split) -> SplitKey:
    return (i, split.service, split.zone)


class OutboundListener:
    def __init__(
        self,
        outbound: Outbound,
        mesh: str,
        stats: OutboundStats,
        contexts: Callable[[], TlsContexts | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        access_log: Callable[[Record], None] | None = None,
    ) -> None:
        self.outbound = outbound
        self.mesh = mesh
        self.stats = stats
        self._contexts = contexts
        self._clock = clock
        self.clock = clock
        self.balancer = Balancer(outbound.endpoints, outbound.policies)
        self._rng = random.Random()
        # MeshTCPRoute: one balancer per split, by position, service and zone
        self.splits: dict[SplitKey, Balancer] = {}
        self._update_splits(outbound)
        # MeshHTTPRoute: the rules' matcher and one balancer per split and mirror
        self.router = Router(outbound.http_rules)
        self.rule_splits: dict[RuleKey, Balancer] = {}
        self._update_rules(outbound)
        self.cluster = _Cluster(self)
        self.cluster.update(outbound.policies)
        self.http = HttpProxy(
            self.cluster, stats.http, "outbound", access_log=access_log, limits=self.cluster.limits
        )
        self.http.routes = self if self.router.filtered else None
        stats.endpoints = self.all_states
        self._servers: dict[int, asyncio.Server] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._hc_task: asyncio.Task[None] | None = None
        self.links: set[Link] = set()
        # MeshAccessLog of TCP connections: (link, destination service, upstream)
        self.tcp_log: Callable[[Link, str, str], None] | None = None

    def all_states(self) -> list[EndpointState]:
        """Every endpoint the outbound can use: its own, or its splits' when routed."""
        return [s for _, b in self._balancers() for s in b.states]

    def _balancers(self) -> list[tuple[str, Balancer]]:
        """The balancers in use with the service each reaches."""
        out = [(key[2], b) for key, b in self.rule_splits.items()]
        if not self.outbound.splits:
            return [(self.outbound.service, self.balancer), *out]
        return [(key[1], b) for key, b in self.splits.items()]

    def _update_rules(self, outbound: Outbound) -> None:
        """MeshHTTPRoute: a balancer per rule split and per mirror, kept (with its endpoints'
        state) while rule, position, service and zone stay."""
        if outbound.http_rules != self.router.rules:
            self.router = Router(outbound.http_rules)
        old, self.rule_splits = self.rule_splits, {}
        for r, rule in enumerate(outbound.http_rules):
            sets = list(enumerate(rule.splits))
            sets += [
                (-1 - f, flt.request_mirror.backend)
                for f, flt in enumerate(rule.filters)
                if flt.request_mirror is not None
            ]
            for i, split in sets:
                key = (r, i, split.service, split.zone)
                balancer = old.get(key)
                if balancer is None:
                    balancer = Balancer(split.endpoints, outbound.policies, self._rng)
                else:
                    balancer.update(split.endpoints, outbound.policies)
                self.rule_splits[key] = balancer

    def _update_splits(self, outbound: Outbound) -> None:
        """A balancer per split; a split that stays (same position, service and zone)
        keeps its balancer and so its endpoints' state."""
        old, self.splits = self.splits, {}
        for i, split in enumerate(outbound.splits):
            key = _split_key(i, split)
            balancer = old.get(key)
            if balancer is None:
                balancer = Balancer(split.endpoints, outbound.policies, self._rng)
            else:
                balancer.update(split.endpoints, outbound.policies)
            self.splits[key] = balancer

    def _holding(self, state: EndpointState) -> tuple[str, Balancer] | None:
        for service, balancer in self._balancers():
            if any(s is state for s in balancer.states):
                return service, balancer
        return None

    def service_of(self, state: EndpointState) -> str:
        """The service an endpoint serves: its split's (the outbound's when not routed)."""
        holder = self._holding(state)
        return self.outbound.service if holder is None else holder[0]

    def route(
        self, tried: EndpointState | None = None, request: RequestHead | None = None
    ) -> tuple[str, Balancer] | None:
        """Where a new connection (an HTTP request) goes: the outbound's service and
        balancer, or a split's drawn by weight (a MeshHTTPRoute's: of the first rule the
        request matches), the split holding `tried` for a retry; None when every split has
        weight 0."""
        outbound = self.outbound
        if not outbound.splits and not outbound.http_rules:
            return outbound.service, self.balancer
        holder = None if tried is None else self._holding(tried)
        if holder is not None:
            return holder
        if outbound.http_rules:
            return self._rule_route(request)
        chosen = pick_split([s.weight for s in outbound.splits], self._rng)
        if chosen is None:
            return None
        split = outbound.splits[chosen]
        return split.service, self.splits[_split_key(chosen, split)]

    def _rule_route(self, request: RequestHead | None) -> tuple[str, Balancer] | None:
        outbound = self.outbound
        found = None if request is None else self.router.match(request)
        rule = None if found is None else outbound.http_rules[found]
        if found is None or rule is None or not rule.splits:  # none, or without backendRefs
            return outbound.service, self.balancer
        chosen = pick_split([s.weight for s in rule.splits], self._rng)
        if chosen is None:
            return None
        split = rule.splits[chosen]
        return split.service, self.rule_splits[(found, chosen, split.service, split.zone)]

    # --- MeshHTTPRoute filters (route.Filtering, asked by the HTTP pipeline) ------------

    def wants(self, head: RequestHead) -> bool:
        found = self.router.match(head)
        return found is not None and bool(self.outbound.http_rules[found].filters)

    def filtered(self, head: RequestHead) -> Action | None:
        found = self.router.match(head)
        rule = None if found is None else self.outbound.http_rules[found]
        if rule is None or found is None or not rule.filters:
            return None
        action = apply(rule, head)
        if action.head is not head:
            self.router.pin(action.head, found)
        mirrors = [
            (f, flt.request_mirror)
            for f, flt in enumerate(rule.filters)
            if flt.request_mirror is not None
            and self._rng.random() * 100 < flt.request_mirror.percentage
        ]
        if action.redirect is not None or not mirrors:
            return action

        def mirror(sent: RequestHead, body: bytes) -> None:
            for f, m in mirrors:
                self._mirror((found, -1 - f, m.backend.service, m.backend.zone), sent, body)

        return dataclasses.replace(action, mirror=mirror)

    def _mirror(self, key: RuleKey, head: RequestHead, body: bytes) -> None:
        """Sends a copy of a request to the mirror's backend; its answer is dropped and
        nothing of it reaches the caller."""
        balancer = self.rule_splits.get(key)
        state = None if balancer is None else balancer.choose(self._clock(), [], None)
        if state is None:
            log.debug("outbound %s: no endpoint to mirror to (%s)", self.name, key[2])
            return
        data = request_bytes(mirrored(head)) + body
        task = asyncio.create_task(self._send_copy(state, key[2], head.method, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_copy(
        self, state: EndpointState, service: str, method: bytes, data: bytes
    ) -> None:
        conn = Conn(None)
        policies = self.outbound.policies
        try:
            await wait_for(
                self.open(state, self.outbound, lambda: conn, service), policies.connect_timeout
            )
            conn.expect(ResponseParser(method))
            conn.write(data)
            await wait_for(health.final_status(conn), policies.request_timeout or None)
        except (OSError, TimeoutError, ssl.SSLError, PkiError) as exc:
            log.debug("outbound %s: mirror to %s: %s", self.name, state.label, describe(exc))
        finally:
            conn.abort()

    @property
    def name(self) -> str:
        o = self.outbound
        return f"{o.service}{'.' + o.zone if o.zone else ''} {o.address}:{o.port}"

    @property
    def ports(self) -> list[int]:
        return sorted(self._servers)

    async def bind(self, port: int) -> None:
        """Listens on the outbound's address at `port` too (its own port, or 80)."""
        if port in self._servers:
            return
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, self.outbound.address, port, backlog=1024)
        self._servers[port] = server

    def _protocol(self) -> asyncio.BaseProtocol:
        """Per accepted connection: the protocol of the config at that moment."""
        if self.outbound.protocol == "http":
            return _HttpAccepted(self)
        return _Accepted(self)

    def unbind(self, port: int) -> None:
        server = self._servers.pop(port, None)
        if server is not None:
            server.close()

    def start(self) -> None:
        self._restart_health_checks()

    def update(self, outbound: Outbound, stats: OutboundStats) -> None:
        """New endpoints or policies for the same address and port: from the next connection
        on. `stats` differ when the address now belongs to another service."""
        old_hc, old_splits = self.outbound.policies.health_check, self.outbound.splits
        self.outbound = outbound
        if stats is not self.stats:
            self.stats = stats
            stats.endpoints = self.all_states
            self.http.stats = stats.http
        self.balancer.update(outbound.endpoints, outbound.policies)
        self._update_splits(outbound)
        old_rules = self.router.rules
        self._update_rules(outbound)
        self.http.routes = self if self.router.filtered else None
        self.cluster.update(outbound.policies)
        if (
            outbound.policies.health_check != old_hc
            or outbound.splits != old_splits
            or outbound.http_rules != old_rules
        ):
            self._restart_health_checks()
        idle = outbound.policies.idle_timeout
        for link in self.links:
            link.set_idle_timeout(idle)

    def close(self) -> None:
        """Stops accepting and checking; open connections finish on their own."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        if self._hc_task is not None:
            self._hc_task.cancel()
            self._hc_task = None
        self.http.cluster.pool.close()

    async def aclose(self) -> None:
        self.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- connections --------------------------------------------------------------------

    def accepted(self, client: _Accepted) -> None:
        stats = self.stats
        stats.connections_total += 1
        if stats.active >= self.outbound.policies.max_connections:
            stats.overflow += 1
            log.info(
                "outbound %s: refused a connection: maxConnections %d reached",
                self.name,
                self.outbound.policies.max_connections,
            )
            client.close(abort=True)
            return
        stats.active += 1
        task = asyncio.create_task(self._connect(client, stats))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def accepted_http(self, client: Conn) -> None:
        """Every client connection is served: for HTTP, maxConnections bounds the upstream
        connections, and a request finding them all busy waits as a pending one
        (maxPendingRequests, mesh_dp/http/limits.py), as in Envoy."""
        stats = self.stats
        stats.connections_total += 1
        stats.active += 1
        task = asyncio.create_task(self._serve_http(client, stats))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_http(self, client: Conn, stats: OutboundStats) -> None:
        CALLER.set(peer_host(client.transport))  # this task serves this one connection
        try:
            await self.http.serve(client)
        finally:
            stats.active -= 1

    async def _connect(self, client: Side, stats: OutboundStats) -> None:
        outbound = self.outbound
        policies = outbound.policies
        tried: list[EndpointState] = []
        errors: list[str] = []
        # TCP: only Connection sourceIP can give a key (no request); without one, random
        key = request_hash(policies.hash.policies, None, peer_host(client.transport))
        route = self.route()
        if route is None:  # every split weighs 0: the route sends nowhere
            self._no_endpoint(client, stats, "every split has weight 0")
            return
        service, balancer = route
        try:
            for _ in range(policies.max_connect_attempts):
                state = balancer.choose(self._clock(), tried, key)
                if state is None:
                    break
                tried.append(state)
                balancer.attempt(state)
                state.active += 1  # counts for LeastRequest while connecting, too
                try:
                    upstream = Side(downstream=False)
                    await wait_for(
                        self.open(state, outbound, _factory(upstream), service),
                        policies.connect_timeout,
                    )
                except (OSError, TimeoutError, ssl.SSLError, PkiError) as exc:
                    reason = describe(exc) if not isinstance(exc, TimeoutError) else "timed out"
                    errors.append(f"{state.label}: {reason}")
                    state.active -= 1
                    balancer.connect_failed(state, self._clock())
                    continue
                balancer.connect_succeeded(state)
                self._link(client, upstream, state, stats)
                return
        except asyncio.CancelledError:
            if tried:
                tried[-1].active -= 1
            client.close(abort=True)
            stats.active -= 1
            raise
        self._no_endpoint(client, stats, "; ".join(errors) or "no endpoints")

    def _no_endpoint(self, client: Side, stats: OutboundStats, why: str) -> None:
        stats.no_endpoint += 1
        stats.active -= 1
        log.warning("outbound %s: no endpoint could be reached (%s)", self.name, why)
        client.close(abort=True)

    async def open(
        self,
        state: EndpointState,
        outbound: Outbound,
        factory: Callable[[], asyncio.BaseProtocol],
        service: str | None = None,
    ) -> None:
        """Connects `factory()`'s protocol to the endpoint: TCP, then mTLS checking that the
        server is `service` (the outbound's by default; the caller bounds the time)."""
        loop = asyncio.get_running_loop()
        endpoint = state.endpoint
        contexts = self._contexts()
        if contexts is None:
            await loop.create_connection(factory, endpoint.address, endpoint.port)
            return
        transport, _ = await loop.create_connection(
            factory,
            endpoint.address,
            endpoint.port,
            ssl=contexts.client,
            server_hostname=endpoint.sni,  # "" sends no SNI (a local sidecar needs none)
            ssl_handshake_timeout=outbound.policies.connect_timeout,
        )
        try:
            check_peer_id(
                transport.get_extra_info("ssl_object"),
                service_id(self.mesh, service or outbound.service),
            )
        except PkiError:
            transport.abort()
            raise

    def _link(
        self, client: Side, upstream: Side, state: EndpointState, stats: OutboundStats
    ) -> None:
        def closed(link: Link, reason: str) -> None:
            state.active -= 1
            stats.active -= 1
            self.links.discard(link)
            if reason.startswith("idle"):
                stats.idle_closed += 1
            if self.tcp_log is not None:
                self.tcp_log(link, self.service_of(state), state.label)
            log.debug("outbound %s: connection closed (%s)", self.name, reason)

        link = Link(
            client, upstream, idle_timeout=self.outbound.policies.idle_timeout, on_close=closed
        )
        self.links.add(link)
        link.start()

    # --- active health checks -----------------------------------------------------------

    def _restart_health_checks(self) -> None:
        if self._hc_task is not None:
            self._hc_task.cancel()
            self._hc_task = None
        if self.outbound.policies.health_check is not None:
            self._hc_task = asyncio.create_task(self._health_checks())

    async def _health_checks(self) -> None:
        while True:
            hc = self.balancer.policies.health_check
            if hc is None:
                return
            checked = [(svc, b, s) for svc, b in self._balancers() for s in b.states]
            results = await asyncio.gather(*(self._probe(s, hc, svc) for svc, _, s in checked))
            for (_, balancer, state), ok in zip(checked, results, strict=True):
                if balancer.health_result(state, ok):
                    log.warning(
                        "outbound %s: endpoint %s is now %s",
                        self.name,
                        state.label,
                        "healthy" if state.healthy else "unhealthy",
                    )
            await asyncio.sleep(hc.interval)

    async def _probe(self, state: EndpointState, hc: HealthCheck, service: str) -> bool:
        if hc.http is not None and self.outbound.protocol == "http":
            return await self._http_probe(state, hc, hc.http, service)
        if not hc.tcp:
            return True  # an http-only check of a tcp outbound: nothing to check
        loop = asyncio.get_running_loop()
        timeout = hc.timeout
        e = state.endpoint
        try:
            transport, _ = await wait_for(
                loop.create_connection(_Probe, e.address, e.port), timeout
            )
        except (OSError, TimeoutError):
            return False
        with contextlib.suppress(OSError):
            transport.close()
        return True

    async def _http_probe(
        self, state: EndpointState, hc: HealthCheck, check: health.HttpCheck, service: str
    ) -> bool:
        """GET the check's path over mTLS, as a request would go (health.py)."""
        conn = Conn(None)
        try:
            await wait_for(self.open(state, self.outbound, lambda: conn, service), hc.timeout)
        except (OSError, TimeoutError, ssl.SSLError, PkiError):
            return False
        return await health.probe(conn, check, service, hc.timeout)
