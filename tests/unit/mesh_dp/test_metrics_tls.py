"""MeshMetric's Prometheus backend with tls mode ProvidedTLS (mesh_dp/metrics_endpoint.py,
decision 144): served over TLS with the sidecar's --metrics-cert-path/--metrics-key-path; a
sidecar without them serves plaintext (Kuma's fallback), logged and counted."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import subprocess
from pathlib import Path

from mesh_dp.metrics_endpoint import MetricsEndpoints
from meshfed.dpconfig.observability import Metrics, MetricsEndpoint
from tests.support import free_port

BODY = b"# TYPE meshfed_dp_up gauge\nmeshfed_dp_up 1\n"


def cert(tmp_path: Path) -> tuple[Path, Path]:
    crt, key = tmp_path / "m.crt", tmp_path / "m.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return crt, key


def get(port: int, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    )
    try:
        conn.request("GET", "/m")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metrics(port: int, tls: bool) -> Metrics:
    return Metrics(
        address="127.0.0.1", endpoints=(MetricsEndpoint(port, "/m", tls=tls),), include_unused=True
    )


def test_provided_tls_serves_https_with_the_sidecars_certificate(tmp_path: Path) -> None:
    crt, key = cert(tmp_path)

    async def run() -> None:
        endpoints = MetricsEndpoints(lambda: BODY, crt, key)
        port = free_port()
        await endpoints.update(metrics(port, tls=True))
        client = ssl.create_default_context(cafile=str(crt))
        try:
            status, body = await asyncio.to_thread(get, port, client)
            assert status == 200 and b"meshfed_dp_up 1" in body
            # and the same port with Disabled: plaintext again
            await endpoints.update(metrics(port, tls=False))
            assert (await asyncio.to_thread(get, port, None))[0] == 200
        finally:
            await endpoints.close()

    asyncio.run(run())


def test_provided_tls_without_a_certificate_falls_back_to_plaintext() -> None:
    async def run() -> None:
        endpoints = MetricsEndpoints(lambda: BODY)
        port = free_port()
        await endpoints.update(metrics(port, tls=True))
        try:
            assert (await asyncio.to_thread(get, port, None))[0] == 200
            assert endpoints.tls_fallbacks == 1
        finally:
            await endpoints.close()

    asyncio.run(run())
