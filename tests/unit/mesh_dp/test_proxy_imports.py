"""The proxies' memory budget (40 MB, docs/benchmarks.md) depends on what they import: grpcio,
cryptography, prometheus_client and pydantic each cost 3-13 MiB and are left to the control
planes (and PyJWT with them: the proxies send their token, zone-cp checks it; and pydantic:
zone-cp validates the proxy's own resource). A fresh
interpreter loads everything a running sidecar or ingress loads (both modes) and must
not find them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("grpc", "cryptography", "prometheus_client", "aiohttp", "jwt", "pydantic")

PROBE = """
import sys
import {modules}
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(",".join(heavy))
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter (a module imported by this test run would hide
    what a proxy's own start imports)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )


@pytest.mark.parametrize(
    "modules",
    [
        # the sidecar, with its control-plane client and everything a config touches
        "mesh_dp.main, mesh_dp.app, meshfed.proxy.cpclient, mesh_dp.sidecar, mesh_dp.tlsconf, "
        "mesh_dp.inbound, mesh_dp.outbound, meshfed.pki.tls, meshfed.dpconfig.model",
        # the zone ingress
        "zone_ingress.main, zone_ingress.app, zone_ingress.server, meshfed.proxy.cpclient",
    ],
    ids=["mesh-dp", "zone-ingress"],
)
def test_proxies_do_not_load_the_control_planes_libraries(modules: str) -> None:
    out = _python(PROBE.format(modules=modules, heavy=HEAVY))
    assert out.stdout.strip() == "", f"loaded by a proxy: {out.stdout.strip()}"


START_UP = """
import sys
import mesh_dp.main, mesh_dp.app, mesh_dp.sidecar, mesh_dp.tlsconf, meshfed.pki.tls
from mesh_dp.settings import CONFIG
from meshfed.process import load_settings
load_settings(CONFIG, "the sidecar", ["run", "--name", "web"])  # argparse's formatters
from mesh_dp.dataplane import load_document
from meshfed.pki.tls import load_chain_pem
load_document('{{"type": "Dataplane", "mesh": "default", "name": "web"}}', "--dataplane")
try:
    load_chain_pem(__import__("ssl").SSLContext(), b"not a PEM")  # the leaf's memfd path
except Exception:
    pass
print(",".join(sorted(set({names!r}) & set(sys.modules))))
"""


def test_the_sidecar_starts_without_yaml_or_tempfile() -> None:
    """Decision 184: PyYAML (~0.8 MiB) only for a YAML Dataplane document, tempfile only
    where there is no memfd_create, shutil with bz2 and lzma (~0.5 MiB) not for argparse's
    terminal width."""
    names = ("yaml", "tempfile", "shutil", "bz2", "lzma")
    out = _python(START_UP.format(names=names))
    assert out.stdout.strip() == "", f"loaded at start: {out.stdout.strip()}"


SCHEMA = (
    "meshfed.resources.types",
    "meshfed.resources.codec",
    "meshfed.resources.descriptors",
    "meshfed.resources.model",
    "meshfed.policy.rules",
    "meshfed.policy.targetref",
    "meshfed.policy.enforced",
)

RUNNING = """
import sys
import mesh_dp.main, mesh_dp.app, meshfed.proxy.cpclient, mesh_dp.sidecar, mesh_dp.tlsconf
import mesh_dp.inbound, mesh_dp.outbound, meshfed.pki.tls, zone_ingress.app, zone_egress.app
from mesh_dp.dataplane import build_dataplane
from meshfed.dpconfig.protocol import ProxyType, hello_message
spec = build_dataplane(address="127.0.0.1", inbounds=["18080:8080:web"])
hello_message(ProxyType.SIDECAR, spec.document, proxy_version="t", reachable=None)
print(",".join(sorted(set({names!r}) & set(sys.modules))))
"""


def test_the_proxies_run_without_the_resource_schema() -> None:
    """Decision 187: the resource types (every type's descriptor, through the package), the
    codec and the policy engine (rules, targetref, enforced) cost a proxy ~0.6 MiB and are
    zone-cp's: a sidecar checks its Dataplane's envelope with meshfed.resources.envelope and
    evaluates its config with the parts it needs."""
    out = _python(RUNNING.format(names=SCHEMA))
    assert out.stdout.strip() == "", f"loaded by a proxy: {out.stdout.strip()}"


READ_BUFFER = """
import asyncio, collections, gc, mmap
import mesh_dp.http.parse, mesh_dp.relay, meshfed.aio

def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4

gc.collect()
before = rss_kib()
import mesh_dp.http.conn
after = rss_kib()
mesh_dp.http.conn._READ[:5] = b"hello"  # a read touches the pages it reaches
print(after - before, bytes(mesh_dp.http.conn._READ[:5]).decode())
"""


def test_the_read_buffer_is_resident_only_where_read() -> None:
    """Decision 188: the sidecar's one 256 KiB HTTP read buffer costs a page once a read
    reaches it, not 256 KiB at import (a zero-filled bytearray: ~310 KiB for the module
    against ~40 KiB)."""
    out = _python(READ_BUFFER)
    grown, read = out.stdout.split()
    assert read == "hello"
    assert int(grown) < 160, f"importing mesh_dp.http.conn made {grown} KiB resident"
