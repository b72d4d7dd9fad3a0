"""The proxy side of the DataplaneConfig stream (proto/dataplane.proto), for mesh-dp and
zone-ingress alike.

- `ConfigSession` (pure) decides what each message from zone-cp means: a config to apply, an
  ACK/NACK to send, or a refusal. A config that does not parse is NACKed with the reason; a
  config whose version already runs (a reconnect) is ACKed without applying it again. After
  applying a config the proxy reports at once: inside the ACK when the Config says the zone
  reads it there (`ack_report`), else as a Report right after the ACK.
- `ConfigClient` is the stream glue (over `meshfed.proxy.h2grpc`, not grpcio: see there why): one
  session at a time (Hello first, then a reader, a
  writer fed by one outbox queue so writes never interleave, and a reporter sending a Report
  every `report_interval` and at once when `report_now()` is called), and after any failure
  a new session after a jittered exponential backoff. The proxy keeps serving its last
  applied config the whole time: losing the control plane never touches a listener.

A fatal Error with code BAD_REQUEST (our Hello is wrong; retrying cannot help) ends `run()`
with `Refused`; other fatal errors (e.g. the mesh does not exist yet, or the token was refused)
are retried at the longest backoff.

The proxy authenticates with a token it reads from `token_file` before every connection (so a
rotated token is used at the next reconnect) and sends as the call's `authorization: Bearer`
metadata. It never parses or checks the token: zone-cp does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

from google.protobuf.message import DecodeError

from meshfed._gen import dataplane_pb2 as pb
from meshfed.aio import first_completed, wait_for
from meshfed.backoff import Backoff
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.dpconfig.protocol import ack_message, nack_message
from meshfed.proxy.h2grpc import BidiCall, RpcError

log = logging.getLogger("meshfed.proxy.cpclient")

C = TypeVar("C")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
STREAM_PATH = f"/{pb.DESCRIPTOR.services_by_name['DataplaneConfig'].full_name}/Stream"
DISCONNECTED, CONNECTING, CONNECTED = "disconnected", "connecting", "connected"
MAX_TOKEN_FILE: Final = 4096  # zone-cp refuses longer tokens (meshfed.auth.tokens.MAX_TOKEN_BYTES)


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace removed); RpcError(UNAUTHENTICATED) naming
    the file when it cannot be read or holds no usable token, so the client retries later."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise RpcError("UNAUTHENTICATED", f"cannot read the token file {path}: {exc}") from None
    if len(raw) > MAX_TOKEN_FILE:
        raise RpcError("UNAUTHENTICATED", f"the token file {path} is over {MAX_TOKEN_FILE} bytes")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or not all(" " < c <= "~" for c in token):
        raise RpcError("UNAUTHENTICATED", f"the token file {path} holds no token")
    return token


@dataclass(frozen=True)
class Apply(Generic[C]):
    version: str
    config: C
    # The zone reads the report after applying it inside the ACK (Config.ack_report).
    ack_report: bool = False


@dataclass(frozen=True)
class Reply:
    message: pb.DpMessage


@dataclass(frozen=True)
class Refusal:
    code: str  # Error.Code name
    message: str
    fatal: bool


class Refused(Exception):
    """zone-cp refused the proxy for good (its Hello is wrong)."""


class ConfigSession(Generic[C]):
    """What to do with each message of one stream; `running` is the applied config's version."""

    def __init__(self, parse: Callable[[pb.CpMessage], C], running: str = "") -> None:
        self._parse = parse
        self.running = running

    def receive(self, msg: pb.CpMessage) -> Apply[C] | Reply | Refusal | None:
        kind = msg.WhichOneof("message")
        if kind == "config":
            version = msg.config.version
            try:
                config = self._parse(msg)
            except ConfigFormatError as exc:
                return Reply(nack_message(version, f"config does not parse: {exc}"))
            if version and version == self.running:
                return Reply(ack_message(version))
            return Apply(version, config, msg.config.ack_report)
        if kind == "error":
            return Refusal(pb.Error.Code.Name(msg.error.code), msg.error.message, msg.error.fatal)
        return None  # a message kind from a newer control plane: ignore it

    def applied(self, version: str, report: pb.Report | None = None) -> pb.DpMessage:
        """The ACK of `version`, carrying `report` (only to a zone that reads it there)."""
        self.running = version
        return ack_message(version, report)

    def failed(self, version: str, error: str) -> pb.DpMessage:
        return nack_message(version, error)


class ConfigClient(Generic[C]):
    """Keeps one proxy connected to its zone control plane until cancelled."""

    def __init__(
        self,
        target: str,
        *,
        hello: Callable[[], pb.DpMessage],
        parse: Callable[[pb.CpMessage], C],
        apply: Callable[[C], Awaitable[None]],
        apply_errors: tuple[type[Exception], ...],
        report: Callable[[], pb.Report],
        running_version: Callable[[], str],
        report_interval: float = 10.0,
        backoff: Backoff | None = None,
        token_file: Path | None = None,
    ) -> None:
        self.target = target
        self.token_file = token_file
        self._hello = hello
        self._parse = parse
        self._apply = apply
        self._apply_errors = apply_errors
        self._report = report
        self._running_version = running_version
        self.report_interval = report_interval
        self.backoff = backoff or Backoff(initial=0.1, maximum=5.0)
        self.state = DISCONNECTED
        self.last_error = ""
        self.sessions = 0
        self.configs_applied = 0
        self.configs_rejected = 0
        self._report_wanted = asyncio.Event()

    def report_now(self) -> None:
        self._report_wanted.set()

    def status(self) -> dict[str, object]:
        return {
            "target": self.target,
            "state": self.state,
            "lastError": self.last_error,
            "sessions": self.sessions,
            "configsApplied": self.configs_applied,
            "configsRejected": self.configs_rejected,
        }

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
                self.last_error = "the control plane ended the stream"
            except Refused:
                raise
            except asyncio.CancelledError:
                raise
            except RpcError as exc:
                self.last_error = str(exc)
            except _RetryLater as exc:
                self.last_error = str(exc)
                self.backoff.attempt = 64  # straight to the longest wait
            except Exception as exc:  # a bug in a session must not end the proxy
                log.exception("config stream with %s failed", self.target)
                self.last_error = repr(exc)
            delay = self.backoff.next_delay()
            log.warning(
                "config stream with %s ended (%s); reconnecting in %.2fs; still serving config %s",
                self.target,
                self.last_error,
                delay,
                self._running_version() or "(none yet)",
            )
            await asyncio.sleep(delay)

    async def run_once(self) -> None:
        self.sessions += 1
        self.state = CONNECTING
        # The limit matches the server's (kds.stream.grpc_options): its engine's limit + 64 KiB.
        metadata: list[tuple[str, str]] = []
        if self.token_file is not None:  # read at every connection: it may have been rotated
            try:
                token = read_token_file(self.token_file)
            except RpcError:
                self.state = DISCONNECTED
                raise
            metadata.append(("authorization", f"Bearer {token}"))
        call = BidiCall(
            self.target, STREAM_PATH, max_message=MAX_MESSAGE_BYTES + 64 * 1024, metadata=metadata
        )
        try:
            await call.start()
            outbox: asyncio.Queue[pb.DpMessage] = asyncio.Queue()
            outbox.put_nowait(self._hello())
            session: ConfigSession[C] = ConfigSession(self._parse, self._running_version())
            await first_completed(
                self._write(call, outbox),
                self._read(call, session, outbox),
                self._reports(outbox),
            )
        finally:
            self.state = DISCONNECTED
            await call.close()

    async def _write(self, call: BidiCall, outbox: asyncio.Queue[pb.DpMessage]) -> None:
        while True:
            await call.write((await outbox.get()).SerializeToString())

    async def _read(
        self, call: BidiCall, session: ConfigSession[C], outbox: asyncio.Queue[pb.DpMessage]
    ) -> None:
        while True:
            data = await call.read()
            if data is None:
                return
            try:
                msg = pb.CpMessage.FromString(data)
            except DecodeError as exc:
                error = f"undecodable message from the control plane: {exc}"
                raise RpcError("INTERNAL", error) from None
            if self.state != CONNECTED:
                self.state = CONNECTED
                self.backoff.reset()
                log.info("config stream with %s connected", self.target)
            decision = session.receive(msg)
            if isinstance(decision, Apply):
                outbox.put_nowait(await self._apply_one(session, decision))
            elif isinstance(decision, Reply):
                if decision.message.WhichOneof("message") == "nack":
                    self.configs_rejected += 1
                    log.error("NACK config: %s", decision.message.nack.error)
                outbox.put_nowait(decision.message)
            elif isinstance(decision, Refusal):
                self._refused(decision)

    async def _apply_one(self, session: ConfigSession[C], decision: Apply[C]) -> pb.DpMessage:
        try:
            await self._apply(decision.config)
        except self._apply_errors as exc:
            self.configs_rejected += 1
            log.error("NACK config %s: %s", decision.version, exc)
            return session.failed(decision.version, str(exc))
        except Exception as exc:
            self.configs_rejected += 1
            log.exception("NACK config %s: internal error", decision.version)
            return session.failed(decision.version, f"internal error: {exc!r}")
        self.configs_applied += 1
        # Tell the control plane at once what now runs: inside the ACK when the zone reads it
        # there (one message, not two: issue 19), else as a Report right after it.
        if decision.ack_report:
            return session.applied(decision.version, self._report())
        self.report_now()
        return session.applied(decision.version)

    def _refused(self, refusal: Refusal) -> None:
        text = f"zone control plane refused us ({refusal.code}): {refusal.message}"
        if not refusal.fatal:
            log.warning("%s", text)
            return
        log.error("%s", text)
        if refusal.code == "BAD_REQUEST":
            raise Refused(text)
        raise _RetryLater(text)

    async def _reports(self, outbox: asyncio.Queue[pb.DpMessage]) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._report_wanted.wait(), self.report_interval)
            self._report_wanted.clear()
            outbox.put_nowait(pb.DpMessage(report=self._report()))


class _RetryLater(Exception):
    """A fatal refusal that may pass (the mesh may be created): retry, slowly."""
