"""A connection to an etcd cluster over the gRPC stubs that `aetcd` ships.

Why not `aetcd.Client` itself: it dials one endpoint in plaintext only and authenticates once.
A control plane needs TLS, several endpoints to fail over between, and a fresh auth token after
an etcd restart (etcd's default "simple" tokens do not survive one).

Retries follow etcd's own Go client: reads are retried on another endpoint while the deadline
allows; a write is sent once, on a connection that is ready, because a write whose connection
dropped mid-call may or may not have been applied and only the caller can decide what to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.aio
from aetcd import rpc

from meshfed.store.base import StoreError

log = logging.getLogger("meshfed.store.etcd")

DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 10.0
_MAX_MESSAGE = 512 * 1024 * 1024  # a full list of a large type arrives as one message
_CHANNEL_OPTIONS = [
    # etcd restarts in well under a second: do not let gRPC back off for many seconds.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Detect a dead member on an idle connection. etcd rejects pings more frequent than 5 s
    # and pings without an open call, hence these values.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
]
# The call did not complete, but trying again (reads) or reconnecting (watches) can help.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.target}"


def parse_endpoints(value: str | Sequence[str]) -> list[Endpoint]:
    """`http://host:port`, `https://host:port` or `host:port`, as a list or comma-separated."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ValueError("no etcd endpoint given (e.g. --etcd-endpoints http://127.0.0.1:2379)")
    out: list[Endpoint] = []
    for item in items:
        url = urlsplit(item if "://" in item else f"http://{item}")
        bad = ValueError(f"invalid etcd endpoint {item!r}: expected http(s)://host:port")
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise bad
        try:
            port = url.port or DEFAULT_PORT
        except ValueError:
            raise bad from None
        out.append(Endpoint(url.hostname, port, url.scheme == "https"))
    if len({ep.tls for ep in out}) > 1:
        raise ValueError("etcd endpoints mix http:// and https://; use one scheme for all")
    return out


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA that signed etcd's certificate, and our client certificate and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("etcd client certificate and key must be given together")

        def read(path: Path | None, what: str) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read etcd {what} {path}: {exc.strerror}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file, "CA file"),
            private_key=read(self.key_file, "client key file"),
            certificate_chain=read(self.cert_file, "client certificate file"),
        )

    @property
    def given(self) -> bool:
        return any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))


class _Stubs:
    __slots__ = ("auth", "channel", "kv", "lease", "watch")

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.kv = rpc.KVStub(channel)
        self.watch = rpc.WatchStub(channel)
        self.lease = rpc.LeaseStub(channel)
        self.auth = rpc.AuthStub(channel)


class EtcdConnection:
    """One gRPC channel per endpoint; calls go to the first one that is ready."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if (username is None) != (password is None):
            raise ValueError("etcd username and password must be given together")
        if timeout <= 0:
            raise ValueError(f"etcd timeout must be > 0, got {timeout}")
        tls = tls or TlsFiles()
        secure = self.endpoints[0].tls or tls.given
        if tls.given and not self.endpoints[0].tls:
            raise ValueError("etcd TLS files were given but the endpoints use http://")
        self.timeout = timeout
        self._username, self._password = username, password
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._auth_lock = asyncio.Lock()
        creds = tls.credentials() if secure else None
        self._stubs = [self._channel(ep, creds) for ep in self.endpoints]
        self._current = 0
        self._closed = False

    @staticmethod
    def _channel(ep: Endpoint, creds: grpc.ChannelCredentials | None) -> _Stubs:
        options: list[tuple[str, Any]] = list(_CHANNEL_OPTIONS)
        if creds is None:
            return _Stubs(grpc.aio.insecure_channel(ep.target, options=options))
        return _Stubs(grpc.aio.secure_channel(ep.target, creds, options=options))

    def where(self) -> str:
        return ",".join(str(ep) for ep in self.endpoints)

    @property
    def has_credentials(self) -> bool:
        return self._username is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def open(self) -> None:
        """Waits for a first connection and authenticates; raises StoreError if it cannot."""
        await self.ready(self._deadline())
        if self._username is not None:
            await self.authenticate()

    async def close(self) -> None:
        self._closed = True
        for stubs in self._stubs:
            await stubs.channel.close(grace=None)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.timeout

    def rotate(self) -> None:
        """Prefers the next endpoint from now on (after a failure on the current one)."""
        self._current = (self._current + 1) % len(self._stubs)

    async def ready(self, deadline: float | None) -> _Stubs:
        """Stubs on a connected endpoint, trying every endpoint; waits up to `deadline`
        (loop time; None = until cancelled)."""
        loop = asyncio.get_running_loop()
        delay = 0.005
        while True:
            if self._closed:
                raise StoreError("the etcd connection is closed")
            count = len(self._stubs)
            for i in range(count):
                index = (self._current + i) % count
                stubs = self._stubs[index]
                if stubs.channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
                    self._current = index
                    return stubs
            if deadline is not None and loop.time() >= deadline:
                raise StoreError(
                    f"cannot reach etcd at {self.where()}: no connection within "
                    f"{self.timeout:g}s; is etcd running and reachable?"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def authenticate(self) -> None:
        """Gets a fresh token (also after etcd restarted and forgot the old one)."""
        stale = self._metadata
        async with self._auth_lock:
            if self._metadata != stale:  # another task already renewed it
                return
            stubs = await self.ready(self._deadline())
            request = rpc.AuthenticateRequest(name=self._username, password=self._password)
            try:
                resp = await stubs.auth.Authenticate(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                if "authentication is not enabled" in (exc.details() or ""):
                    log.warning("etcd at %s has authentication disabled", self.where())
                    return
                raise StoreError(
                    f"etcd at {self.where()} rejected user {self._username!r}: {exc.details()}"
                ) from None
            self._metadata = (("token", resp.token),)
            log.debug("signed in to etcd at %s as %r", self.where(), self._username)

    def _can_reauth(self, exc: grpc.aio.AioRpcError) -> bool:
        return self._username is not None and exc.code() is grpc.StatusCode.UNAUTHENTICATED

    async def call(
        self,
        method: Callable[[_Stubs], Callable[..., Any]],
        request: Any,
        *,
        idempotent: bool,
        what: str,
        timeout: float | None = None,
    ) -> Any:
        """Sends a unary request; maps every gRPC failure to a StoreError saying what failed.

        `timeout` shortens the connection's deadline for a call that may give up early."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline()
        if timeout is not None:
            deadline = min(deadline, loop.time() + timeout)
        reauthenticated = False
        while True:
            stubs = await self.ready(deadline)
            try:
                return await method(stubs)(
                    request,
                    timeout=max(deadline - loop.time(), 0.001),
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as exc:
                # An invalid token is refused before anything is applied: safe to resend.
                if self._can_reauth(exc) and not reauthenticated:
                    reauthenticated = True
                    await self.authenticate()
                    continue
                if idempotent and exc.code() in TRANSIENT_CODES and loop.time() < deadline:
                    self.rotate()
                    await asyncio.sleep(0.02)
                    continue
                raise self._error(exc, idempotent, what) from None

    def _error(self, exc: grpc.aio.AioRpcError, idempotent: bool, what: str) -> StoreError:
        detail = exc.details() or exc.code().name
        if not idempotent and exc.code() in TRANSIENT_CODES:
            return StoreError(
                f"etcd {what} at {self.where()}: the connection failed before etcd answered, "
                f"so the write may or may not have been applied; read it back before "
                f"retrying ({detail})"
            )
        return StoreError(f"etcd {what} failed at {self.where()}: {detail}")

    # --- the requests the stores use -------------------------------------------------------

    async def range(self, request: Any, what: str = "read") -> Any:
        return await self.call(lambda s: s.kv.Range, request, idempotent=True, what=what)

    async def txn(self, request: Any, what: str = "write") -> Any:
        return await self.call(lambda s: s.kv.Txn, request, idempotent=False, what=what)

    async def open_watch(self) -> grpc.aio.StreamStreamCall[Any, Any]:
        """A Watch stream on a ready endpoint; waits for one until cancelled."""
        stubs = await self.ready(None)
        call: grpc.aio.StreamStreamCall[Any, Any] = stubs.watch.Watch(metadata=self._metadata)
        return call
