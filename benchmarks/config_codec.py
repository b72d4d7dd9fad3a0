"""The sidecar config message: msgspec Structs (meshfed.dpconfig.model) against protobuf
messages (benchmarks/config_codec.proto, the same fields), on a realistic config.

    .venv/bin/python benchmarks/config_codec.py [--outbounds 100 1000] [--repeat 30]

The config: one inbound with compiled MeshTrafficPermissions, N outbounds with three
endpoints each (two local, one through another zone's ingress with its SNI), policies with a
health check and their sources, and a real mesh leaf certificate, key and CA. Per candidate
and size (the fastest of `--repeat` runs after one warm-up: the machine is shared, and the
slower runs measure the neighbours):

- push: what zone-cp does per rebuilt config, from the built config to the Config message's
  bytes: the content version and the body. msgspec: `encode_config` (one encode, a hash of
  those bytes) and `config_message`. protobuf: `SerializeToString`, the hash, the Config.
  With a model that still has `stamped()` (before decision 75) it is `stamped()` then
  `config_message`, the code path zone-cp had;
- decode: what the proxy does with a Config: `parse_sidecar_config` (decode, check, typed
  objects); protobuf: `FromString` plus a walk checking the ranges the msgspec definition
  declares (ports, counts, durations, caPems, tls when mtlsEnabled, sni when viaIngress), as
  proto3 checks none of them;
- RSS: a child process imports what mesh-dp loads anyway (asyncio, ssl, protobuf with the
  DataplaneConfig messages, the resource types, the policy rules), then the candidate, decodes
  the N-outbound config and keeps it; reported: VmRSS growth over that base.

Needs grpcio-tools (the dev lock) to generate the candidate. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meshfed.dpconfig import model  # noqa: E402
from meshfed.dpconfig.model import (  # noqa: E402
    Endpoint,
    HealthCheck,
    Inbound,
    LbAlgorithm,
    Locality,
    Outbound,
    OutboundPolicies,
    SidecarConfig,
    Tls,
)
from meshfed.dpconfig.protocol import config_message, parse_sidecar_config  # noqa: E402
from meshfed.pki.ca import create_mesh_ca  # noqa: E402
from meshfed.pki.leaf import issue_leaf  # noqa: E402
from meshfed.policy.permissions import Action, MatchType, Permissions, SpiffeMatch  # noqa: E402

PROTO = Path(__file__).resolve().parent / "config_codec.proto"
PORT_MAX, UINT32 = 65535, 2**32 - 1


def make_config(outbounds: int) -> SidecarConfig:
    ca = create_mesh_ca("default")
    leaf = issue_leaf(ca, "web")
    perms = Permissions(
        mesh="default",
        default=Action.DENY,
        services={f"client-{i}": Action.ALLOW for i in range(10)},
        deny=(SpiffeMatch(MatchType.EXACT, "spiffe://default/bad"),),
        allow=(SpiffeMatch(MatchType.PREFIX, "spiffe://default/ops"),),
        sources=("MeshTrafficPermission/allow-clients",),
    )
    policies = OutboundPolicies(
        connect_timeout=2.0,
        idle_timeout=600.0,
        max_connect_attempts=3,
        health_check=HealthCheck(5.0, 1.0, 3, 1),
        max_connections=512,
        load_balancer=LbAlgorithm.LEAST_REQUEST,
        least_request_choices=2,
        sources=("MeshTimeout/default", "MeshHealthCheck/hc", "MeshLoadBalancingStrategy/lr"),
    )
    return SidecarConfig(
        mesh="default",
        zone="zone-1",
        dataplane="web-1",
        identity="spiffe://default/web",
        mtls_enabled=True,
        inbounds=(
            Inbound(
                name="http",
                address="10.0.0.5",
                port=18080,
                service_address="127.0.0.1",
                service_port=8080,
                service="web",
                tags={"kuma.io/service": "web", "kuma.io/zone": "zone-1", "version": "v1"},
                permissions=perms,
            ),
        ),
        outbounds=tuple(
            Outbound(
                service=f"svc-{i}",
                address=f"240.0.{i // 250}.{i % 250 + 1}",
                port=8080,
                endpoints=(
                    Endpoint(f"10.1.{i // 250}.{i % 250 + 1}", 18080, "zone-1"),
                    Endpoint(f"10.2.{i // 250}.{i % 250 + 1}", 18080, "zone-1"),
                    Endpoint(
                        "10.9.0.1",
                        10001,
                        "zone-2",
                        2,
                        Locality.REMOTE,
                        True,
                        f"svc-{i}{{mesh=default}}.sni.mesh",
                    ),
                ),
                policies=policies,
                also_port_80=True,
            )
            for i in range(outbounds)
        ),
        tls=Tls(
            leaf.cert_pem.decode(),
            leaf.key_pem.decode(),
            (ca.cert_pem.decode(),),
            "2030-01-01T00:00:00Z",
        ),
    )


def msgspec_push(config: SidecarConfig) -> Any:
    encode = getattr(model, "encode_config", None)
    if encode is None:  # before decision 75: stamp (encode to hash), then encode to send
        return config_message(config.stamped())  # type: ignore[arg-type]
    return config_message(encode(config))


def generate_candidate(tmp: Path) -> Any:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO.parent}",
            f"--python_out={tmp}",
            PROTO.name,
        ],
        check=True,
    )
    sys.path.insert(0, str(tmp))
    import config_codec_pb2  # type: ignore[import-not-found]

    return config_codec_pb2


def to_pb(pb: Any, c: SidecarConfig) -> Any:
    def endpoint(e: Endpoint) -> Any:
        return pb.Endpoint(
            address=e.address,
            port=e.port,
            zone=e.zone,
            weight=e.weight,
            locality=pb.REMOTE if e.locality is Locality.REMOTE else pb.LOCAL,
            via_ingress=e.via_ingress,
            sni=e.sni,
        )

    def matches(ms: tuple[SpiffeMatch, ...]) -> list[Any]:
        return [pb.SpiffeMatch(type=str(m.type), value=m.value) for m in ms]

    def policies(p: OutboundPolicies) -> Any:
        hc = p.health_check
        return pb.OutboundPolicies(
            connect_timeout=p.connect_timeout,
            idle_timeout=p.idle_timeout,
            max_connect_attempts=p.max_connect_attempts,
            health_check=None
            if hc is None
            else pb.HealthCheck(
                interval=hc.interval,
                timeout=hc.timeout,
                unhealthy_threshold=hc.unhealthy_threshold,
                healthy_threshold=hc.healthy_threshold,
            ),
            max_connections=p.max_connections,
            load_balancer=pb.LEAST_REQUEST,
            least_request_choices=p.least_request_choices,
            locality_aware=p.locality_aware,
            sources=list(p.sources),
        )

    def inbound(i: Inbound) -> Any:
        p = i.permissions
        return pb.Inbound(
            name=i.name,
            address=i.address,
            port=i.port,
            service_address=i.service_address,
            service_port=i.service_port,
            service=i.service,
            tags=dict(i.tags),
            permissions=pb.Permissions(
                mesh=p.mesh,
                enforced=p.enforced,
                default=str(p.default or ""),
                services={k: str(v) for k, v in p.services.items()},
                deny=matches(p.deny),
                allow=matches(p.allow),
                allow_with_shadow_deny=matches(p.allow_with_shadow_deny),
                sources=list(p.sources),
            ),
            protocol="tcp",
        )

    tls = c.tls
    assert tls is not None
    return pb.SidecarConfig(
        mesh=c.mesh,
        zone=c.zone,
        dataplane=c.dataplane,
        identity=c.identity,
        mtls_enabled=c.mtls_enabled,
        inbounds=[inbound(i) for i in c.inbounds],
        outbounds=[
            pb.Outbound(
                service=o.service,
                address=o.address,
                port=o.port,
                endpoints=[endpoint(e) for e in o.endpoints],
                policies=policies(o.policies),
                also_port_80=o.also_port_80,
                zone=o.zone,
                kind=str(o.kind),
                protocol="tcp",
            )
            for o in c.outbounds
        ],
        tls=pb.Tls(
            cert_pem=tls.cert_pem,
            key_pem=tls.key_pem,
            ca_pems=list(tls.ca_pems),
            expires_at=tls.expires_at,
        ),
    )


def _check(ok: bool, where: str) -> None:
    if not ok:
        raise ValueError(where)


def _seconds(v: float) -> bool:
    return 0 <= v <= 2**32 and math.isfinite(v)


def check_pb(c: Any) -> None:
    """The checks the msgspec definition declares, by hand for the protobuf message."""
    _check(not c.mtls_enabled or c.HasField("tls"), "tls")
    if c.HasField("tls"):
        _check(len(c.tls.ca_pems) > 0, "tls.caPems")
    for i in c.inbounds:
        _check(1 <= i.port <= PORT_MAX and 1 <= i.service_port <= PORT_MAX, "inbound port")
        _check(i.protocol in ("tcp", "http", "http2", "grpc"), "inbound protocol")
        for m in (*i.permissions.deny, *i.permissions.allow):
            _check(m.type in ("Exact", "Prefix"), "match type")
    for o in c.outbounds:
        _check(1 <= o.port <= PORT_MAX, "outbound port")
        _check(o.kind in ("vip", "explicit"), "kind")
        p = o.policies
        _check(_seconds(p.connect_timeout) and _seconds(p.idle_timeout), "timeouts")
        _check(p.max_connect_attempts >= 1 and p.max_connections >= 1, "counts")
        _check(p.least_request_choices >= 2, "leastRequestChoices")
        if p.HasField("health_check"):
            hc = p.health_check
            _check(_seconds(hc.interval) and _seconds(hc.timeout), "healthCheck")
            _check(hc.unhealthy_threshold >= 1 and hc.healthy_threshold >= 1, "thresholds")
        for e in o.endpoints:
            _check(1 <= e.port <= PORT_MAX and e.weight >= 1, "endpoint")
            _check(not e.via_ingress or bool(e.sni), "sni")


def best_us(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs: on a shared machine the others measure the neighbours."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e6


RSS_CHILD = """
import gc, sys
sys.path[:0] = [{repo!r}, {tmp!r}]
def rss():
    gc.collect()
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
import asyncio, ssl, json, hashlib
import meshfed._gen.dataplane_pb2
import meshfed.resources.types, meshfed.policy.rules, meshfed.pki.spiffe
base = rss()
data = open({path!r}, "rb").read()
if {kind!r} == "msgspec":
    from meshfed.dpconfig.model import SidecarConfig
    config = SidecarConfig.from_json(data)
else:
    import config_codec_pb2
    config = config_codec_pb2.SidecarConfig.FromString(data)
print(rss() - base)
"""


def rss_growth(kind: str, body: bytes, tmp: Path) -> float:
    path = tmp / f"{kind}.bin"
    path.write_bytes(body)
    code = RSS_CHILD.format(repo=str(REPO), tmp=str(tmp), path=str(path), kind=kind)
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
        for _ in range(3)
    ]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--outbounds", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="meshfed-codec-") as tmp_dir:
        tmp = Path(tmp_dir)
        pb = generate_candidate(tmp)
        for n in args.outbounds:
            config = make_config(n)
            msg = msgspec_push(config)
            rows.append(
                {
                    "codec": "msgspec" if hasattr(model, "encode_config") else "hand JSON",
                    "outbounds": n,
                    "bytes": len(msg.config.json),
                    "push_us": best_us(partial(msgspec_push, config), args.repeat),
                    "decode_us": best_us(partial(parse_sidecar_config, msg), args.repeat),
                    "rss_mib": rss_growth("msgspec", msg.config.json, tmp)
                    if hasattr(model, "encode_config")
                    else None,
                }
            )
            message = to_pb(pb, config)
            body = message.SerializeToString()

            def pb_push(m: Any = message) -> Any:
                data = m.SerializeToString()
                return (hashlib.sha256(data).hexdigest()[:16], data)

            def pb_decode(data: bytes = body) -> Any:
                decoded = pb.SidecarConfig.FromString(data)
                check_pb(decoded)
                return decoded

            rows.append(
                {
                    "codec": "protobuf",
                    "outbounds": n,
                    "bytes": len(body),
                    "push_us": best_us(pb_push, args.repeat),
                    "decode_us": best_us(pb_decode, args.repeat),
                    "decode_unchecked_us": best_us(
                        partial(pb.SidecarConfig.FromString, body), args.repeat
                    ),
                    "rss_mib": rss_growth("protobuf", body, tmp),
                }
            )
    head = ("codec", "outbounds", "bytes", "push µs", "decode µs", "RSS MiB")
    print("{:10} {:>9} {:>9} {:>9} {:>10} {:>8}".format(*head))
    for r in rows:
        rss = "-" if r["rss_mib"] is None else f"{r['rss_mib']:.2f}"
        print(
            f"{r['codec']:10} {r['outbounds']:>9} {r['bytes']:>9} {r['push_us']:>9.0f} "
            f"{r['decode_us']:>10.0f} {rss:>8}"
        )
    print(json.dumps({"results": rows}))


if __name__ == "__main__":
    main()
