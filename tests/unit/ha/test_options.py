"""HA options of global-cp and zone-cp, and how the API answers when the store fails."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from global_cp.settings import CONFIG as GLOBAL_CONFIG
from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.config import Address, Config, ConfigError
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from meshfed.store.base import ListPage, StoreError
from meshfed.store.memory import MemoryStore
from zone_cp.settings import CONFIG as ZONE_CONFIG
from zone_cp.settings import parse_grpc_targets

S = TypeVar("S")


def resolve(config: Config[S], argv: list[str], env: dict[str, str] | None = None) -> S:
    ns: argparse.Namespace = config.parser().parse_args(argv)
    return config.resolve(ns, env or {})


def test_global_etcd_flags() -> None:
    s = resolve(
        GLOBAL_CONFIG,
        [
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:2379, http://127.0.0.1:22379",
            "--etcd-prefix",
            "/prod",
            "--etcd-username",
            "root",
            "--etcd-ca-file",
            "/etc/ca.pem",
            "--etcd-lease-ttl",
            "2500ms",
        ],
        {"MESHFED_ETCD_PASSWORD": "secret"},
    )
    etcd = s.etcd
    assert s.store == "etcd"
    assert etcd.etcd_endpoints == "http://127.0.0.1:2379,http://127.0.0.1:22379"
    assert (etcd.etcd_prefix, etcd.etcd_username, etcd.etcd_password) == ("/prod", "root", "secret")
    assert etcd.etcd_ca_file == Path("/etc/ca.pem") and etcd.etcd_cert_file is None
    assert s.etcd_lease_ttl == 3  # whole seconds, rounded up

    defaults = resolve(GLOBAL_CONFIG, [])
    assert defaults.store == "sqlite" and defaults.etcd_lease_ttl == 10
    assert defaults.etcd.etcd_endpoints == "http://127.0.0.1:2379"
    assert defaults.etcd.etcd_prefix is None


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--store", "etcd3"], "expected one of memory, sqlite, etcd"),
        (["--etcd-endpoints", "ftp://x:1"], "invalid etcd endpoint 'ftp://x:1'"),
        (["--etcd-endpoints", "http://a:1,https://b:2"], "mix http:// and https://"),
        (["--etcd-lease-ttl", "0s"], "must be greater than zero"),
    ],
)
def test_bad_global_options_name_the_problem(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        resolve(GLOBAL_CONFIG, argv)


def test_zone_takes_several_global_replicas_and_the_etcd_flags() -> None:
    s = resolve(
        ZONE_CONFIG,
        [
            "--zone",
            "zone-1",
            "--global-kds",
            "grpc://127.0.0.1:7685,grpc://127.0.0.1:6685",
            "--store",
            "etcd",
        ],
    )
    assert s.global_kds == (Address("127.0.0.1", 7685), Address("127.0.0.1", 6685))
    assert s.store == "etcd" and s.etcd.etcd_prefix is None
    assert resolve(ZONE_CONFIG, ["--zone", "z"]).global_kds == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("grpc://a:1,,grpc://b:2", "an empty address"),
        ("grpc://a:1,", "an empty address"),
        ("grpc://a:1,a:1", "listed twice"),
        ("grpc://a:0", "must not be 0"),
        ("https://a:1", "expected grpcs://HOST:PORT"),
    ],
)
def test_bad_global_kds_lists(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_grpc_targets(text)


class _LostStore(MemoryStore):
    """Every read fails as an etcd cluster without quorum fails."""

    async def list(self, *args: Any, **kwargs: Any) -> ListPage:
        raise StoreError("etcd list failed at http://127.0.0.1:2379: etcdserver: no leader")


async def test_a_failing_store_is_503_so_clients_retry() -> None:
    async def status() -> dict[str, Any]:
        return {"leader": True}

    ctx = ApiContext(_LostStore(), default_registry(), Mode.GLOBAL, ready=True)
    ctx.leader_status = status
    async with TestClient(TestServer(build_app(ctx), host="127.0.0.1")) as client:
        resp = await client.get("/meshes")
        body = await resp.json()
        assert resp.status == 503
        assert body["title"] == "Service Unavailable"
        assert "no leader" in body["detail"]
        resp = await client.get("/_leader")
        assert resp.status == 200 and await resp.json() == {"leader": True}
    plain = ApiContext(MemoryStore(), default_registry(), Mode.GLOBAL, ready=True)
    async with TestClient(TestServer(build_app(plain), host="127.0.0.1")) as client:
        assert (await client.get("/_leader")).status == 404
