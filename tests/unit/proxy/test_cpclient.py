"""The config stream client: its pure session logic, and its gRPC glue against a scripted
DataplaneConfig server on loopback (zone-cp's real server comes with its own issue)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.backoff import Backoff
from meshfed.dpconfig.model import ConfigFormatError, IngressConfig, encode_config
from meshfed.dpconfig.protocol import (
    ProxyType,
    config_message,
    error_message,
    hello_message,
    parse_ingress_config,
)
from meshfed.proxy.cpclient import Apply, ConfigClient, ConfigSession, Refusal, Refused, Reply
from meshfed.proxy.h2state import GrpcMessages, frame
from tests.support import async_wait_until
from tests.unit.proxy.test_h2grpc_peers import GRPC_HEADERS, Peer, goaway, h2_server

CONFIG_A = IngressConfig(zone="zone-2", ingress="ingress-1", services=()).stamped()
CONFIG_B = IngressConfig(zone="zone-2", ingress="ingress-2", services=()).stamped()
HELLO = hello_message(
    ProxyType.INGRESS,
    {"type": "ZoneIngress", "name": "ingress-1", "networking": {"address": "127.0.0.1", "port": 1}},
)


def broken_config(version: str = "v-bad") -> pb.CpMessage:
    return pb.CpMessage(config=pb.Config(version=version, json=b'{"zone": 5}'))


def older_zone_config(config: IngressConfig) -> pb.CpMessage:
    """The Config a zone-cp older than `Config.ack_report` sends: it does not read a report
    inside an ACK."""
    msg = config_message(encode_config(config))
    msg.config.ClearField("ack_report")
    return msg


# --- ConfigSession (pure) ---------------------------------------------------------------


def test_session_applies_new_versions_and_acks_the_running_one() -> None:
    session = ConfigSession(parse_ingress_config)
    decision = session.receive(config_message(encode_config(CONFIG_A)))
    assert isinstance(decision, Apply) and decision.config == CONFIG_A
    assert decision.ack_report  # this code's zone reads a report inside the ACK
    assert not session.receive(older_zone_config(CONFIG_A)).ack_report  # type: ignore[union-attr]
    ack = session.applied(CONFIG_A.version)
    assert ack.ack.version == CONFIG_A.version and not ack.ack.HasField("report")
    with_report = session.applied(CONFIG_A.version, pb.Report(config_version=CONFIG_A.version))
    assert with_report.ack.report.config_version == CONFIG_A.version
    again = session.receive(config_message(encode_config(CONFIG_A)))
    assert isinstance(again, Reply) and again.message.ack.version == CONFIG_A.version
    assert isinstance(session.receive(config_message(encode_config(CONFIG_B))), Apply)


def test_session_nacks_what_does_not_parse() -> None:
    session = ConfigSession(parse_ingress_config, running=CONFIG_A.version)
    decision = session.receive(broken_config())
    assert isinstance(decision, Reply)
    nack = decision.message.nack
    assert nack.version == "v-bad" and "zone: Expected `str`, got `int`" in nack.error
    # The envelope's version must be the hash of the body.
    lying = pb.CpMessage(config=pb.Config(version="other", json=encode_config(CONFIG_B).body))
    decision = session.receive(lying)
    assert (
        isinstance(decision, Reply)
        and "differs from the body's hash" in decision.message.nack.error
    )
    assert session.running == CONFIG_A.version
    failed = session.failed("v2", "bind failed")
    assert (failed.nack.version, failed.nack.error) == ("v2", "bind failed")


def test_session_reports_refusals_and_ignores_unknown_messages() -> None:
    session = ConfigSession(parse_ingress_config)
    refusal = session.receive(
        error_message(pb.Error.REGISTRATION_REFUSED, "name taken", fatal=True)
    )
    assert refusal == Refusal("REGISTRATION_REFUSED", "name taken", True)
    assert session.receive(pb.CpMessage()) is None


# --- ConfigClient against a scripted server -----------------------------------------------


class ScriptedCp(pb_grpc.DataplaneConfigServicer):
    """Answers each session's Hello with what the test queued; records what it received."""

    def __init__(self) -> None:
        self.received: list[tuple[int, pb.DpMessage]] = []
        self.sessions = 0
        self.outbox: asyncio.Queue[pb.CpMessage | None] = asyncio.Queue()
        self.changed = asyncio.Event()

    async def Stream(
        self, request_iterator: AsyncIterator[pb.DpMessage], context: Any
    ) -> AsyncIterator[pb.CpMessage]:
        self.sessions += 1
        session = self.sessions

        async def read() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for msg in request_iterator:
                    self.received.append((session, msg))
                    self.changed.set()

        reader = asyncio.create_task(read())
        try:
            while (msg := await self.outbox.get()) is not None:
                yield msg
        finally:
            reader.cancel()

    def kinds(self, session: int | None = None) -> list[str]:
        return [
            str(m.WhichOneof("message"))
            for s, m in self.received
            if session is None or s == session
        ]

    def of(self, kind: str) -> list[pb.DpMessage]:
        return [m for _, m in self.received if m.WhichOneof("message") == kind]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class ApplyError(Exception):
    pass


class Proxy:
    """What the client drives: records applied configs, refuses when told to."""

    def __init__(self) -> None:
        self.applied: list[IngressConfig] = []
        self.refuse = False

    async def apply(self, config: IngressConfig) -> None:
        if self.refuse:
            raise ApplyError("cannot listen on 127.0.0.1:80: already in use")
        self.applied.append(config)

    def version(self) -> str:
        return self.applied[-1].version if self.applied else ""

    def report(self) -> pb.Report:
        return pb.Report(config_version=self.version())


@pytest.fixture
async def cp() -> AsyncIterator[tuple[ScriptedCp, str]]:
    server = grpc.aio.server()
    scripted = ScriptedCp()
    pb_grpc.add_DataplaneConfigServicer_to_server(scripted, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield scripted, f"127.0.0.1:{port}"
    await server.stop(grace=None)


def client(target: str, proxy: Proxy, report_interval: float = 30.0) -> ConfigClient[IngressConfig]:
    return ConfigClient(
        target,
        hello=lambda: HELLO,
        parse=parse_ingress_config,
        apply=proxy.apply,
        apply_errors=(ApplyError,),
        report=proxy.report,
        running_version=proxy.version,
        report_interval=report_interval,
        backoff=Backoff(initial=0.01, maximum=0.05),
    )


@contextlib.asynccontextmanager
async def running(c: ConfigClient[IngressConfig]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(c.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Refused):
            await task


async def test_hello_then_configs_are_applied_acked_and_reported(
    cp: tuple[ScriptedCp, str],
) -> None:
    server, target = cp
    proxy = Proxy()
    c = client(target, proxy)
    async with running(c):
        await server.wait(lambda: server.kinds() == ["hello"])
        hello = server.received[0][1].hello
        assert json.loads(hello.resource)["name"] == "ingress-1"
        assert hello.proxy_type == pb.INGRESS

        # A zone that does not read a report inside an ACK: the ACK, then a Report.
        server.outbox.put_nowait(older_zone_config(CONFIG_A))
        await server.wait(lambda: len(server.of("ack")) == 1 and len(server.of("report")) == 1)
        assert proxy.applied == [CONFIG_A]
        assert server.of("ack")[0].ack.version == CONFIG_A.version
        assert not server.of("ack")[0].ack.HasField("report")
        assert server.of("report")[0].report.config_version == CONFIG_A.version
        assert c.status()["state"] == "connected"

        server.outbox.put_nowait(broken_config())
        await server.wait(lambda: len(server.of("nack")) == 1)
        assert "config does not parse" in server.of("nack")[0].nack.error

        proxy.refuse = True
        server.outbox.put_nowait(config_message(encode_config(CONFIG_B)))
        await server.wait(lambda: len(server.of("nack")) == 2)
        assert server.of("nack")[1].nack.version == CONFIG_B.version
        assert "already in use" in server.of("nack")[1].nack.error
        assert proxy.version() == CONFIG_A.version  # still running the last good one
        assert c.status()["configsRejected"] == 2


async def test_the_report_after_a_config_rides_in_its_ack_when_the_zone_reads_it(
    cp: tuple[ScriptedCp, str],
) -> None:
    """Config.ack_report: one message (an ACK carrying the report made after applying), not
    an ACK and a Report; a config already running is ACKed alone, as before."""
    server, target = cp
    proxy = Proxy()
    async with running(client(target, proxy)):
        server.outbox.put_nowait(config_message(encode_config(CONFIG_A)))
        await server.wait(lambda: len(server.of("ack")) == 1)
        ack = server.of("ack")[0].ack
        assert ack.version == CONFIG_A.version
        assert ack.HasField("report") and ack.report.config_version == CONFIG_A.version
        # No Report of its own follows: had one been queued, it would precede this NACK.
        server.outbox.put_nowait(broken_config())
        await server.wait(lambda: len(server.of("nack")) == 1)
        assert server.kinds() == ["hello", "ack", "nack"]
        server.outbox.put_nowait(config_message(encode_config(CONFIG_A)))  # runs already
        await server.wait(lambda: len(server.of("ack")) == 2)
        assert not server.of("ack")[1].ack.HasField("report")
        server.outbox.put_nowait(config_message(encode_config(CONFIG_B)))
        await server.wait(lambda: len(server.of("ack")) == 3)
        assert server.of("ack")[2].ack.report.config_version == CONFIG_B.version
        assert server.kinds() == ["hello", "ack", "nack", "ack", "ack"]


async def test_reports_are_periodic(cp: tuple[ScriptedCp, str]) -> None:
    server, target = cp
    proxy = Proxy()
    async with running(client(target, proxy, report_interval=0.05)):
        await server.wait(lambda: len(server.of("report")) >= 3)


async def test_reconnects_and_does_not_reapply_what_runs(cp: tuple[ScriptedCp, str]) -> None:
    server, target = cp
    proxy = Proxy()
    c = client(target, proxy)
    async with running(c):
        server.outbox.put_nowait(config_message(encode_config(CONFIG_A)))
        await server.wait(lambda: len(server.of("ack")) == 1)
        server.outbox.put_nowait(None)  # the control plane ends the stream
        await server.wait(lambda: server.sessions == 2 and "hello" in server.kinds(2))
        assert server.kinds(2)[0] == "hello"
        server.outbox.put_nowait(config_message(encode_config(CONFIG_A)))
        await server.wait(lambda: len(server.of("ack")) == 2)
        assert proxy.applied == [CONFIG_A]  # ACKed again, not applied again
        assert c.sessions == 2


async def test_keeps_retrying_while_the_control_plane_is_away() -> None:
    proxy = Proxy()
    proxy.applied.append(CONFIG_A)  # what the proxy serves meanwhile
    c = client("127.0.0.1:1", proxy)  # nothing listens there
    async with running(c):
        await async_wait_until(lambda: _true(c.sessions >= 3), what="three attempts")
    assert c.last_error.startswith("UNAVAILABLE")
    assert proxy.version() == CONFIG_A.version


async def test_a_fatal_bad_request_ends_the_client(cp: tuple[ScriptedCp, str]) -> None:
    server, target = cp
    c = client(target, Proxy())
    server.outbox.put_nowait(error_message(pb.Error.BAD_REQUEST, "Hello.resource bad", fatal=True))
    with pytest.raises(Refused, match=r"Hello\.resource bad"):
        await asyncio.wait_for(c.run(), 5)


async def test_other_refusals_are_retried(cp: tuple[ScriptedCp, str]) -> None:
    server, target = cp
    proxy = Proxy()
    c = client(target, proxy)
    server.outbox.put_nowait(error_message(pb.Error.CONFIG_UNAVAILABLE, "no cert yet"))
    server.outbox.put_nowait(
        error_message(pb.Error.REGISTRATION_REFUSED, "mesh 'x' does not exist", fatal=True)
    )
    async with running(c):
        await server.wait(lambda: server.sessions >= 2)
        server.outbox.put_nowait(config_message(encode_config(CONFIG_A)))
        await server.wait(lambda: len(server.of("ack")) == 1)
    assert proxy.applied == [CONFIG_A]


async def _true(value: bool) -> bool:
    return value


def test_parse_errors_are_config_format_errors() -> None:
    with pytest.raises(ConfigFormatError):
        parse_ingress_config(broken_config())


# --- a control plane going away gracefully (issue 16) --------------------------------------


async def test_a_graceful_goaway_finishes_the_stream_then_reconnects() -> None:
    """The server drains: the config sent after its GOAWAY is applied and ACKed on the same
    stream, the stream ends OK, and the client opens a new connection (it used to fail the
    stream at the GOAWAY and lose what followed)."""
    connections: list[Peer] = []

    def sent_by_client(peer: Peer) -> list[pb.DpMessage]:
        return [pb.DpMessage.FromString(m) for m in GrpcMessages(1 << 20).feed(bytes(peer.data))]

    async def acked(peer: Peer, version: str) -> None:
        async def done() -> bool:
            return any(m.ack.version == version for m in sent_by_client(peer))

        await async_wait_until(done, timeout=10, what=f"ACK of {version}")

    async def script(peer: Peer) -> None:
        connections.append(peer)
        peer.conn.send_headers(peer.stream_id, GRPC_HEADERS)
        if len(connections) > 1:
            peer.flush()
            return  # the second connection: held open
        peer.conn.send_data(
            peer.stream_id, frame(config_message(encode_config(CONFIG_A)).SerializeToString())
        )
        peer.flush()
        await acked(peer, CONFIG_A.version)
        peer.writer.write(goaway(peer.stream_id))
        peer.conn.send_data(
            peer.stream_id, frame(config_message(encode_config(CONFIG_B)).SerializeToString())
        )
        peer.flush()
        await acked(peer, CONFIG_B.version)
        peer.conn.send_headers(peer.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        peer.flush()

    proxy = Proxy()
    async with h2_server(script) as target:
        c = client(target, proxy)
        async with running(c):
            await async_wait_until(
                lambda: _true(len(connections) == 2), timeout=10, what="a second connection"
            )
            assert proxy.applied == [CONFIG_A, CONFIG_B]
            assert c.last_error == "the control plane ended the stream"
            assert sent_by_client(connections[1])[0].WhichOneof("message") == "hello"
