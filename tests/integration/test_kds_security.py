"""KDS security against real processes (issue 11): TLS on the KDS port, zone tokens.

A real global-cp (TLS from its own KDS CA, admin token in a file) and a real zone-cp pinned
to that CA with its token. Raw gRPC clients play the attackers. Every refusal is checked as
the client sees it (status and message) and by what did not happen: no Zone created, nothing
stored, nothing received, the real zone's streams untouched.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.auth.tokens import SigningKey, ZoneClaims, ZoneScope, issue
from meshfed.kds.auth import AUTHORIZATION, CLIENT_INSTANCE
from meshfed.kds.stream import CLIENT_ID, EOF
from tests.integration.federation_support import (
    Cluster,
    TokenHttp,
    dataplane,
    eventually,
    kds_ca_path,
    mt_path,
    provision_zone,
    read_admin_token,
    timeout_policy,
    zone_digest,
    zone_ingress,
    zone_token_path,
)
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

Metadata = tuple[tuple[str, str], ...]
ZONE_KEY = "zone-token-signing-key-1"
MTLS_MESH = {
    "type": "Mesh",
    "name": "default",
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}


@dataclass
class Fed:
    cluster: Cluster
    admin: TokenHttp  # the global's API, as admin
    key: SigningKey  # the global's zone-token signing key (an admin can read it)

    @property
    def root(self) -> Path:
        return self.cluster.root

    @property
    def kds_port(self) -> int:
        port = self.cluster.glob.kds_port
        assert port is not None
        return port

    def token(
        self,
        zone: str,
        scope: tuple[ZoneScope, ...] = (ZoneScope.KDS,),
        valid_for: dt.timedelta = dt.timedelta(hours=1),
        now: dt.datetime | None = None,
    ) -> str:
        return issue(ZoneClaims(zone, scope), self.key, valid_for, now=now)

    def zone_names(self) -> set[str]:
        return {z["name"] for z in self.admin.items("/zones")}

    def zone_inventory(self) -> dict[str, int]:
        """Resources zones sent, by zone (Dataplanes and ZoneIngresses at the global)."""
        count: dict[str, int] = {}
        for path in ("/dataplanes", "/zoneingresses"):
            for item in self.admin.items(path):
                zone = item.get("labels", {}).get("kuma.io/zone", "")
                count[zone] = count.get(zone, 0) + 1
        return count


def start_fed(procs: Procs, root: Path, zones: tuple[str, ...] = ("zone-1",)) -> Fed:
    # Heartbeats every 1 s: the global then lets a second instance replace a zone only after
    # 2.5 s of silence, so a loaded host cannot make the live zone look gone to the probes.
    cluster = Cluster.create(
        procs, root, zone_names=zones, global_args=("--zone-health-interval", "1s")
    )
    cluster.start()
    cluster.wait_online()
    admin = TokenHttp(cluster.glob.http.port, read_admin_token(root))
    secret = admin.get(f"/global-secrets/{ZONE_KEY}")
    key = SigningKey.from_pem(ZONE_KEY, base64.b64decode(secret["data"]))
    return Fed(cluster, admin, key)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    root: Path = tmp_path_factory.mktemp("kds-security")
    procs = Procs(root)
    try:
        f = start_fed(procs, root)
        zone = f.cluster.zones["zone-1"]
        # zone-1 owns a Dataplane (written through its API with the admin token, which the
        # zone verifies with the user-token public key the global synced to it).
        zone_admin = TokenHttp(zone.http.port, f.admin.token)
        eventually(
            lambda: (
                zone_admin.call("PUT", "/meshes/default/dataplanes/web-1", dataplane("web-1"))[0]
                in (200, 201)
            ),
            what="zone-1 registers a dataplane",
        )
        eventually(lambda: f.zone_inventory().get("zone-1") == 1, what="dp at the global")
        yield f
    finally:
        procs.stop_all()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "fed" in request.fixturenames:
        print(request.getfixturevalue("fed").cluster.procs.dump_logs())


# -- a raw KDS client --------------------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode | None  # None: the call was not refused
    details: str
    received: int  # messages the global sent before ending the call


async def _stream(
    call: Any, first: pb.SyncRequest | pb.SyncResponse | None, limit: float = 5.0
) -> Outcome:
    received = 0
    # As a zone-cp does: write only once the global answered the call (a write racing its
    # refusal would turn the refusal into a bare INTERNAL on the client, grpc #36066).
    await call.initial_metadata()
    with contextlib.suppress(Exception):  # the call may already be over: read says why
        if first is not None and not call.done():
            await call.write(first)
    try:
        async with asyncio.timeout(limit):
            while True:
                msg = await call.read()
                if msg is EOF:
                    return Outcome(None, "EOF", received)
                received += 1
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code(), exc.details() or "", received)
    except TimeoutError:
        call.cancel()
        return Outcome(None, "still open", received)


async def _probe(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    metadata: Metadata,
    push: list[pb.KdsResource] | None = None,
    push_type: str = "ZoneIngress",
) -> dict[str, Outcome]:
    """HealthCheck, GlobalToZoneSync (asking for the mesh CA Secrets) and ZoneToGlobalSync
    (pushing `push`), each as a would-be zone does."""
    if credentials is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        channel = grpc.aio.secure_channel(target, credentials)
    out: dict[str, Outcome] = {}
    async with channel:
        stub = pb_grpc.KDSStub(channel)
        try:
            await stub.HealthCheck(pb.HealthCheckRequest(), metadata=metadata, timeout=5)
            out["HealthCheck"] = Outcome(None, "", 1)
        except grpc.aio.AioRpcError as exc:
            out["HealthCheck"] = Outcome(exc.code(), exc.details() or "", 0)
        down = stub.GlobalToZoneSync(None, metadata=metadata, timeout=10)
        out["GlobalToZoneSync"] = await _stream(down, pb.SyncRequest(type="Secret"), 3.0)
        up = stub.ZoneToGlobalSync(None, metadata=metadata, timeout=10)
        resp = pb.SyncResponse(type=push_type, nonce="n1", resources=push or [])
        out["ZoneToGlobalSync"] = await _stream(up, resp, 3.0)
    return out


def probe(
    fed: Fed, metadata: Metadata, push: list[pb.KdsResource] | None = None, **kw: Any
) -> dict[str, Outcome]:
    creds = grpc.ssl_channel_credentials(kds_ca_path(fed.root).read_bytes())
    return asyncio.run(_probe(f"127.0.0.1:{fed.kds_port}", creds, metadata, push, **kw))


def md(zone: str, token: str | None, instance: str = "") -> Metadata:
    out: Metadata = ((CLIENT_ID, zone),)
    if token is not None:
        out += ((AUTHORIZATION, token if " " in token else f"Bearer {token}"),)
    if instance:
        out += ((CLIENT_INSTANCE, instance),)
    return out


def assert_refused(outcomes: dict[str, Outcome], code: grpc.StatusCode, fragment: str) -> None:
    for rpc, outcome in outcomes.items():
        assert outcome.code == code, (rpc, outcome)
        assert fragment in outcome.details, (rpc, outcome)
        assert outcome.received == 0, (rpc, outcome)


def ingress_pb(name: str) -> pb.KdsResource:
    spec = json.dumps({k: v for k, v in zone_ingress(name).items() if k not in ("type", "name")})
    return pb.KdsResource(name=name, version="v1", spec=spec.encode())


def dataplane_pb(name: str) -> pb.KdsResource:
    body = dataplane(name)
    spec = json.dumps({"networking": body["networking"]}).encode()
    return pb.KdsResource(name=name, mesh="default", version="v1", spec=spec)


# -- one test per refusal ------------------------------------------------------------------------


def _other_key_token(fed: Fed, kid: str) -> str:
    return issue(ZoneClaims("zone-x", (ZoneScope.KDS,)), SigningKey.generate(kid), dt.timedelta(1))


CASES: dict[str, tuple[Callable[[Fed], Metadata], grpc.StatusCode, str]] = {
    "no token": (
        lambda f: md("zone-x", None),
        grpc.StatusCode.UNAUTHENTICATED,
        "missing gRPC metadata 'authorization'",
    ),
    "not a bearer token": (
        lambda f: md("zone-x", "Basic dXNlcjpwYXNz"),
        grpc.StatusCode.UNAUTHENTICATED,
        "malformed gRPC metadata 'authorization'",
    ),
    "garbage token": (
        lambda f: md("zone-x", "not.a.jwt"),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid zone token",
    ),
    "bad signature (a key of the same id the global never made)": (
        lambda f: md("zone-x", _other_key_token(f, ZONE_KEY)),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid zone token: invalid signature",
    ),
    "unknown signing key": (
        lambda f: md("zone-x", _other_key_token(f, "zone-token-signing-key-99")),
        grpc.StatusCode.UNAUTHENTICATED,
        "signed by an unknown key",
    ),
    "expired": (
        lambda f: md(
            "zone-x",
            f.token(
                "zone-x",
                valid_for=dt.timedelta(hours=1),
                now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
            ),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "expired",
    ),
    "a user token (the admin's) instead of a zone token": (
        lambda f: md("zone-x", f.admin.token),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid zone token",
    ),
    "another zone's token": (
        lambda f: md("zone-x", zone_token_path(f.root, "zone-1").read_text().strip()),
        grpc.StatusCode.PERMISSION_DENIED,
        "not valid for zone 'zone-x'",
    ),
    "a token without scope kds": (
        lambda f: md("zone-x", f.token("zone-x", scope=(ZoneScope.INGRESS,))),
        grpc.StatusCode.PERMISSION_DENIED,
        "lacks scope 'kds'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_zone_gets_the_reason_and_nothing_is_stored_or_sent(fed: Fed, case: str) -> None:
    make, code, fragment = CASES[case]
    before = fed.zone_inventory()
    outcomes = probe(fed, make(fed), push=[ingress_pb("evil-ingress")])
    assert_refused(outcomes, code, fragment)
    token = dict(make(fed)).get(AUTHORIZATION, "")
    for outcome in outcomes.values():  # a refusal never echoes the token
        assert not token or token.split(" ")[-1] not in outcome.details
    assert fed.zone_names() == {"zone-1"}  # no Zone zone-x
    assert fed.zone_inventory() == before  # nothing stored
    assert "zone-x" not in json.dumps(fed.admin.get("/zones+insights"))


def test_a_revoked_token_is_refused(fed: Fed) -> None:
    token = fed.token("zone-x")
    payload = token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    data = base64.b64encode(jti.encode()).decode()
    body = {"type": "GlobalSecret", "name": "zone-token-revocations", "data": data}
    fed.admin.put("/global-secrets/zone-token-revocations", body)
    try:
        # The verifier re-reads keys at most every second: until then a HealthCheck (which
        # creates nothing) passes.
        async def health() -> grpc.StatusCode | None:
            creds = grpc.ssl_channel_credentials(kds_ca_path(fed.root).read_bytes())
            async with grpc.aio.secure_channel(f"127.0.0.1:{fed.kds_port}", creds) as channel:
                try:
                    await pb_grpc.KDSStub(channel).HealthCheck(
                        pb.HealthCheckRequest(), metadata=md("zone-x", token), timeout=5
                    )
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
            return None

        wait_until(
            lambda: asyncio.run(health()) == grpc.StatusCode.UNAUTHENTICATED,
            timeout=10,
            what="revocation applies",
        )
        outcomes = probe(fed, md("zone-x", token))
        assert_refused(outcomes, grpc.StatusCode.UNAUTHENTICATED, "revoked")
        assert fed.zone_names() == {"zone-1"}
    finally:
        fed.admin.delete("/global-secrets/zone-token-revocations")


def test_a_plaintext_client_cannot_talk_to_the_tls_port(fed: Fed) -> None:
    token = zone_token_path(fed.root, "zone-1").read_text().strip()
    target = f"127.0.0.1:{fed.kds_port}"
    outcomes = asyncio.run(_probe(target, None, md("zone-1", token, "plain")))
    for rpc, outcome in outcomes.items():
        assert outcome.code == grpc.StatusCode.UNAVAILABLE, (rpc, outcome)
        assert outcome.received == 0
    sessions = fed.cluster.zones["zone-1"].http.get("/_kds")["sessions"]
    assert sessions == 1  # the real zone never noticed


def test_a_second_instance_with_the_zones_own_token_learns_nothing_about_the_live_one(
    fed: Fed,
) -> None:
    token = zone_token_path(fed.root, "zone-1").read_text().strip()
    outcomes = probe(fed, md("zone-1", token, "intruder-instance"), push=[dataplane_pb("evil")])
    assert_refused(outcomes, grpc.StatusCode.ALREADY_EXISTS, "already connected")
    overview = fed.admin.get("/zones/zone-1/_overview")["zoneInsight"]
    live = str(overview["lastError"])  # the admin sees which instance is live
    assert "intruder-instance" in live
    live_instance = live.split("(instance ")[1].split(",")[0]
    for outcome in outcomes.values():
        assert live_instance not in outcome.details and "heard from" not in outcome.details
    assert fed.cluster.zones["zone-1"].http.get("/_kds")["sessions"] == 1
    assert fed.zone_inventory() == {"zone-1": 1}  # the push never landed


# -- the attacks of issue 11 -----------------------------------------------------------------


def test_attack_a_an_evil_zone_gets_nothing_least_of_all_the_mesh_ca_key(fed: Fed) -> None:
    # The real zone holds the mesh CA (so there is something to steal).
    fed.admin.put("/meshes/default", MTLS_MESH)
    zone_admin = TokenHttp(fed.cluster.zones["zone-1"].http.port, fed.admin.token)
    eventually(
        lambda: any(
            ".ca-builtin-key-" in s["name"] for s in zone_admin.items("/meshes/default/secrets")
        ),
        what="the mesh CA key in zone-1",
    )
    for metadata in (md("evil-zone", None), md("evil-zone", "garbage")):
        outcomes = probe(fed, metadata)
        assert all(o.received == 0 and o.code is not None for o in outcomes.values()), outcomes
    assert "evil-zone" not in fed.zone_names()


def test_attack_b_a_fake_zones_inventory_never_reaches_the_real_zone(fed: Fed) -> None:
    for metadata in (md("evil-zone", None), md("evil-zone", fed.token("zone-2"))):
        probe(fed, metadata, push=[ingress_pb("evil-ingress")])
        probe(fed, metadata, push=[dataplane_pb("evil-dp")], push_type="Dataplane")
    # A marker after the attempts: once zone-1 has it, anything sent before has arrived too.
    fed.admin.put(mt_path("marker-b"), timeout_policy("marker-b"))
    zone = fed.cluster.zones["zone-1"].http
    eventually(lambda: zone.call("GET", mt_path("marker-b"))[0] == 200, what="marker in zone-1")
    assert zone.items("/zoneingresses") == []
    assert fed.zone_inventory() == {"zone-1": 1}
    fed.admin.delete(mt_path("marker-b"))


def test_attack_c_a_client_claiming_zone_1_cannot_cut_its_streams_or_touch_its_inventory(
    fed: Fed,
) -> None:
    zone = fed.cluster.zones["zone-1"].http
    sessions = zone.get("/_kds")["sessions"]
    subs = len(fed.admin.get("/zones/zone-1/_overview")["zoneInsight"]["subscriptions"])
    zone2 = fed.token("zone-2")
    for metadata in (md("zone-1", None, "x"), md("zone-1", zone2, "x"), md("zone-1", zone2)):
        outcomes = probe(fed, metadata, push=[dataplane_pb("web-1")], push_type="Dataplane")
        assert all(o.code is not None and o.received == 0 for o in outcomes.values()), outcomes
    assert zone.get("/_kds")["sessions"] == sessions
    assert zone.get("/_kds")["state"] == "connected"
    overview = fed.admin.get("/zones/zone-1/_overview")["zoneInsight"]
    assert overview["state"] == "online" and len(overview["subscriptions"]) == subs
    assert fed.zone_inventory() == {"zone-1": 1}
    assert [d["name"].split(".")[0] for d in fed.admin.items("/dataplanes")] == ["web-1"]


def test_attack_d_a_zone_pinned_to_its_ca_refuses_another_global_on_the_same_port(
    procs: Procs, tmp_path: Path
) -> None:
    fed = start_fed(procs, tmp_path / "a")
    zone = fed.cluster.zones["zone-1"]
    fed.admin.put(mt_path("real"), timeout_policy("real"))
    eventually(lambda: zone.http.call("GET", mt_path("real"))[0] == 200, what="real policy")
    zone_admin = TokenHttp(zone.http.port, fed.admin.token)  # secrets are admin-only
    held = zone_digest(zone_admin)
    fed.cluster.stop(fed.cluster.glob)
    eventually(lambda: zone.http.get("/_kds")["state"] != "connected", what="zone notices")

    # Another global, its own store and KDS CA, on the very port zone-1 dials.
    impostor = Cluster.create(procs, tmp_path / "b", zone_names=())
    impostor.glob.argv[impostor.glob.argv.index("--kds-address") + 1] = f"127.0.0.1:{fed.kds_port}"
    impostor.glob.kds_port = fed.kds_port
    impostor.glob.name = "impostor"  # its own log file
    impostor.start()
    evil = TokenHttp(impostor.glob.http.port, read_admin_token(tmp_path / "b"))
    evil.put(mt_path("evil"), timeout_policy("evil", idle="1s"))

    def refused() -> bool:
        error = str(zone.http.get("/_kds")["lastError"] or "")
        return "CERTIFICATE_VERIFY_FAILED" in error or "certificate verify failed" in error

    eventually(refused, timeout=20, what="zone-1 refuses the impostor's certificate")
    sessions = zone.http.get("/_kds")["sessions"]
    eventually(lambda: zone.http.get("/_kds")["sessions"] >= sessions + 2, what="retries")
    assert zone.http.get("/_kds")["state"] != "connected"
    assert zone.http.call("GET", mt_path("evil"))[0] == 404
    assert zone_digest(zone_admin) == held  # its store is as the real global left it
    assert evil.items("/zones") == []  # the impostor never saw zone-1...
    assert impostor.glob.proc is not None
    assert "zone-1" not in impostor.glob.proc.log()  # ...nor its token


def test_a_revoked_token_ends_a_connected_zones_session(procs: Procs, tmp_path: Path) -> None:
    fed = start_fed(procs, tmp_path)
    zone = fed.cluster.zones["zone-1"].http
    token = zone_token_path(tmp_path, "zone-1").read_text().strip()
    payload = token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    body = {
        "type": "GlobalSecret",
        "name": "zone-token-revocations",
        "data": base64.b64encode(jti.encode()).decode(),
    }
    fed.admin.put("/global-secrets/zone-token-revocations", body)
    eventually(lambda: "revoked" in str(zone.get("/_kds")["lastError"]), what="zone refused")
    eventually(lambda: fed.cluster.zone_state("zone-1")["state"] == "offline", what="offline")
    assert fed.zone_names() == {"zone-1"}  # refused, not deleted
    # A new token lets it back in at its next attempt (the zone re-reads the file).
    provision_zone(tmp_path, fed.cluster.glob.http.port, "zone-1")
    eventually(lambda: zone.get("/_kds")["state"] == "connected", what="back with a new token")


def test_a_global_restart_keeps_its_kds_ca(procs: Procs, tmp_path: Path) -> None:
    fed = start_fed(procs, tmp_path)
    ca = kds_ca_path(tmp_path).read_bytes()
    fed.cluster.stop(fed.cluster.glob)
    fed.cluster.start(fed.cluster.glob)
    assert kds_ca_path(tmp_path).read_bytes() == ca
    fed.cluster.wait_online("zone-1")  # the zone, pinned to the CA, is accepted again
