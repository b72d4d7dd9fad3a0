"""Valid examples of every type pass unchanged: dict -> Resource -> dict, and YAML text too.

A few policy examples and the full Mesh use fields meshfed does not enforce: they have Kuma's
shape (and round-trip through it), but the API refuses them, naming those fields.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry
from meshfed.resources.types.mesh import MESH_NOT_ENFORCED
from tests.unit.policy.factories import schema_registry

# Written in the order and style `resource_to_dict` + yaml.safe_dump produce, so that the
# round trip must reproduce the text byte for byte.
EXAMPLES: dict[str, str] = {
    "mesh-passthrough": """\
type: MeshPassthrough
mesh: default
name: allow-some
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: demo-app
  default:
    passthroughMode: Matched
    appendMatch:
    - type: Domain
      value: '*.wikipedia.org'
      port: 443
      protocol: tls
    - type: CIDR
      value: 10.250.0.0/16
      port: 10000
      protocol: tcp
""",
    "mesh-external-service": """\
type: MeshExternalService
mesh: default
name: httpbin
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: http
  endpoints:
  - address: httpbin.org
    port: 443
    priority: 0
  tls:
    enabled: true
    version:
      min: TLS12
      max: TLS13
    allowRenegotiation: false
    verification:
      mode: Secured
      serverName: httpbin.org
      subjectAltNames:
      - type: Exact
        value: httpbin.org
      caCert:
        secret: httpbin-ca
""",
    "mesh-minimal": """\
type: Mesh
name: default
""",
    "mesh-full": """\
type: Mesh
name: payments
creationTime: '2024-05-01T10:00:00Z'
modificationTime: '2024-05-02T10:00:00Z'
labels:
  team: payments
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    mode: STRICT
    dpCert:
      rotation:
        expiration: 1d
    conf:
      caCert:
        RSAbits: 2048
        expiration: 10y
  - name: ca-2
    type: builtin
skipCreatingInitialPolicies:
- '*'
networking:
  outbound:
    passthrough: false
routing:
  localityAwareLoadBalancing: true
  zoneEgress: false
constraints:
  dataplaneProxy:
    requirements:
    - tags:
        kuma.io/zone: east
    restrictions:
    - tags:
        env: dev
meshServices:
  mode: Disabled
""",
    "zone": """\
type: Zone
name: zone-1
enabled: false
""",
    "zone-default-enabled": """\
type: Zone
name: zone-2
""",
    "secret": """\
type: Secret
mesh: default
name: mesh-ca
data: dGVzdAo=
""",
    "global-secret": """\
type: GlobalSecret
name: user-token-revocations
data: dGVzdAo=
""",
    "dataplane": """\
type: Dataplane
mesh: default
name: web-01
labels:
  kuma.io/zone: zone-1
networking:
  address: 192.168.0.2
  advertisedAddress: web-01.example.com
  inbound:
  - name: http
    port: 8080
    servicePort: 80
    serviceAddress: 127.0.0.1
    address: 192.168.0.2
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
      version: v1
    health:
      ready: true
    serviceProbe:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      tcp: {}
  - port: 9090
    tags:
      kuma.io/service: web-metrics
  outbound:
  - port: 33033
    address: 127.0.0.1
    tags:
      kuma.io/service: backend
  admin:
    port: 9901
""",
    "dataplane-ipv6": """\
type: Dataplane
mesh: default
name: web-02
networking:
  address: fd00::2
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
""",
    "zone-ingress": """\
type: ZoneIngress
name: zone-1.ingress
zone: zone-1
networking:
  address: 127.0.0.1
  port: 10001
  advertisedAddress: 10.0.0.1
  advertisedPort: 10000
  admin:
    port: 9902
availableServices:
- tags:
    kuma.io/service: backend
    version: v2
  instances: 2
  mesh: default
- tags:
    kuma.io/service: web
  instances: 0
  mesh: default
  externalService: false
""",
    "zone-insight": """\
type: ZoneInsight
name: zone-1
subscriptions:
- id: abc
  connectTime: '2024-05-01T10:00:00Z'
""",
    "dataplane-insight": """\
type: DataplaneInsight
mesh: default
name: web-01
health:
  ready: true
""",
    "virtual-ips": """\
type: VirtualIPs
mesh: default
name: zone-1
spec:
  cidr: 127.1.0.0/16
  cursor: 127.1.0.4
  services:
    backend:
      vip: 127.1.0.1
      zones:
        zone-2: 127.1.0.2
  reserved:
  - service: web
    vip: 127.1.0.3
    since: '2024-05-01T10:00:00Z'
""",
    "zone-egress": """\
type: ZoneEgress
name: zone-1.egress
zone: zone-1
networking:
  address: 192.168.0.2
  port: 10002
  admin:
    port: 9903
""",
    "zone-egress-insight": """\
type: ZoneEgressInsight
name: zone-1.egress
subscriptions: []
""",
    "mesh-service": """\
type: MeshService
mesh: default
name: redis
labels:
  team: db-operators
spec:
  selector:
    dataplaneTags:
      kuma.io/service: redis
  ports:
  - name: main
    port: 6739
    targetPort: 6739
    appProtocol: tcp
status:
  addresses:
  - hostname: redis.svc.mesh.local
    origin: HostnameGenerator
    hostnameGeneratorRef:
      coreName: local-universal-mesh-service
  vips:
  - ip: 241.0.0.1
  tls:
    status: Ready
""",
    "mesh-multi-zone-service": """\
type: MeshMultiZoneService
mesh: default
name: redis
spec:
  selector:
    meshService:
      matchLabels:
        kuma.io/display-name: redis
  ports:
  - port: 6379
    appProtocol: tcp
""",
    "hostname-generator": """\
type: HostnameGenerator
name: synced-universal-mesh-service
spec:
  selector:
    meshService:
      matchLabels:
        kuma.io/origin: global
        kuma.io/env: universal
  template: '{{ .DisplayName }}.svc.{{ .Zone }}.mesh.local'
""",
    "zone-ingress-insight": """\
type: ZoneIngressInsight
name: zone-1.ingress
subscriptions: []
""",
    "mtp": """\
type: MeshTrafficPermission
mesh: default
name: allow-orders
labels:
  kuma.io/origin: global
spec:
  targetRef:
    kind: MeshService
    name: payments
  from:
  - targetRef:
      kind: MeshSubset
      tags:
        kuma.io/service: orders
    default:
      action: Allow
""",
    "mesh-timeout": """\
type: MeshTimeout
mesh: default
name: timeouts
spec:
  targetRef:
    kind: Mesh
    proxyTypes:
    - Sidecar
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      connectionTimeout: 1s
      idleTimeout: 1h
      http:
        requestTimeout: 5s
        streamIdleTimeout: 30m
        maxStreamDuration: 30m
        maxConnectionDuration: 1h
        requestHeadersTimeout: 500ms
""",
    "mesh-retry": """\
type: MeshRetry
mesh: default
name: retries
spec:
  targetRef:
    kind: Dataplane
    name: web-01
  to:
  - targetRef:
      kind: Mesh
    default:
      grpc:
        retryOn:
        - Unavailable
        - ResourceExhausted
""",
    "mesh-health-check": """\
type: MeshHealthCheck
mesh: default
name: hc
spec:
  targetRef:
    kind: MeshServiceSubset
    name: web
    tags:
      version: '*'
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      interval: 10s
      http:
        path: /health
""",
    "mesh-circuit-breaker": """\
type: MeshCircuitBreaker
mesh: default
name: cb
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      connectionLimits:
        maxConnectionPools: 10
""",
    "mesh-load-balancing-strategy": """\
type: MeshLoadBalancingStrategy
mesh: default
name: lb
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      loadBalancer:
        type: Random
        random: {}
""",
    "mesh-http-route": """\
type: MeshHTTPRoute
mesh: default
name: backend-split
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: frontend
  to:
  - targetRef:
      kind: MeshService
      name: backend
    rules:
    - matches:
      - path:
          type: PathPrefix
          value: /v2
        method: GET
        headers:
        - type: Exact
          name: x-canary
          value: 'true'
        queryParams:
        - type: RegularExpression
          name: user
          value: ^a.*
      default:
        filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set:
            - name: x-route
              value: v2
            remove:
            - x-debug
        - type: URLRewrite
          urlRewrite:
            hostname: backend.internal
            path:
              type: ReplacePrefixMatch
              replacePrefixMatch: /
        - type: RequestMirror
          requestMirror:
            percentage: '12.5'
            backendRef:
              kind: MeshServiceSubset
              name: backend
              tags:
                version: v3
        backendRefs:
        - kind: MeshServiceSubset
          name: backend
          tags:
            kuma.io/zone: zone-1
          weight: 90
        - kind: MeshServiceSubset
          name: backend
          tags:
            kuma.io/zone: zone-2
          weight: 10
    - matches:
      - path:
          type: Exact
          value: /old
      default:
        filters:
        - type: RequestRedirect
          requestRedirect:
            scheme: https
            hostname: example.com
            port: 8443
            statusCode: 301
""",
    "mesh-tcp-route": """\
type: MeshTCPRoute
mesh: default
name: tcp-split
spec:
  to:
  - targetRef:
      kind: MeshService
      name: redis
    rules:
    - default:
        backendRefs:
        - kind: MeshService
          name: redis
          weight: 50
        - kind: MeshServiceSubset
          name: redis
          tags:
            kuma.io/zone: zone-2
          weight: 50
""",
    "mesh-fault-injection": """\
type: MeshFaultInjection
mesh: default
name: chaos
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
  - targetRef:
      kind: MeshSubset
      tags:
        kuma.io/service: web
    default:
      http:
      - abort:
          httpStatus: 503
          percentage: 50
        delay:
          value: 250ms
          percentage: '2.5'
      - responseBandwidth:
          limit: 10kbps
          percentage: 100
""",
    "mesh-rate-limit": """\
type: MeshRateLimit
mesh: default
name: limits
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: backend
  rules:
  - default:
      local:
        http:
          requestRate:
            num: 10
            interval: 1s
          onRateLimit:
            status: 429
            headers:
              add:
              - name: x-limited
                value: 'yes'
        tcp:
          connectionRate:
            num: 100
            interval: 100ms
""",
    "mesh-access-log": """\
type: MeshAccessLog
mesh: default
name: logs
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      backends:
      - type: File
        file:
          path: /tmp/access.log
          format:
            type: Plain
            plain: '%KUMA_SOURCE_SERVICE% => %KUMA_DESTINATION_SERVICE% %DURATION%'
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      backends:
      - type: Tcp
        tcp:
          address: 127.0.0.1:5000
          format:
            type: Json
            json:
            - key: start_time
              value: '%START_TIME%'
            - key: status
              value: '%RESPONSE_CODE%'
            omitEmptyValues: true
""",
    "mesh-metric": """\
type: MeshMetric
mesh: default
name: metrics
spec:
  targetRef:
    kind: Mesh
  default:
    sidecar:
      includeUnused: false
      profiles:
        appendProfiles:
        - name: Basic
        exclude:
        - type: Regex
          match: .*_bucket
        include:
        - type: Prefix
          match: meshfed_dp_
    applications:
    - name: app
      path: /metrics/prometheus
      port: 8888
    backends:
    - type: Prometheus
      prometheus:
        port: 5670
        path: /metrics
""",
    "mesh-trace": """\
type: MeshTrace
mesh: default
name: traces
spec:
  targetRef:
    kind: Mesh
  default:
    backends:
    - type: Zipkin
      zipkin:
        url: http://jaeger-collector:9411/api/v2/spans
        apiVersion: httpJson
    sampling:
      overall: 80
    tags:
    - name: team
      literal: core
    - name: env
      header:
        name: x-env
        default: prod
""",
}


# Examples the enforcement gate refuses, with the fields it names.
NOT_ENFORCED_FIELDS = {
    "mesh-full": [
        "skipCreatingInitialPolicies",
        "routing.localityAwareLoadBalancing",
        "constraints.dataplaneProxy",
    ],
    "mesh-retry": ["spec.to[0].default.grpc"],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_yaml_text_round_trip(name: str) -> None:
    text = EXAMPLES[name]
    data = yaml.safe_load(text)
    registry = schema_registry()  # Kuma's shape; the gate is checked below
    res = resource_from_dict(data, registry)
    back = resource_to_dict(res, registry.get(res.type))
    assert back == data
    assert yaml.safe_dump(back, sort_keys=False) == text


def test_every_type_has_an_example() -> None:
    covered = {yaml.safe_load(text)["type"] for text in EXAMPLES.values()}
    assert covered == set(default_registry().names())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_api_refuses_only_the_unenforced_examples(name: str) -> None:
    data = yaml.safe_load(EXAMPLES[name])
    if name not in NOT_ENFORCED_FIELDS:
        assert resource_from_dict(data, default_registry()).type == data["type"]
        return
    with pytest.raises(ValidationError) as info:
        resource_from_dict(data, default_registry())
    assert [e.field for e in info.value.errors] == NOT_ENFORCED_FIELDS[name]
    assert all(MESH_NOT_ENFORCED in e.reason for e in info.value.errors)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_parsing_does_not_mutate_input(name: str) -> None:
    data: dict[str, Any] = yaml.safe_load(EXAMPLES[name])
    snapshot = yaml.safe_dump(data)
    resource_from_dict(data, schema_registry())
    assert yaml.safe_dump(data) == snapshot
