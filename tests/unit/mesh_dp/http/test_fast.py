"""The callback path (fast.py) driven through fake transports: what it serves itself, what it
waits for, and what it hands to the coroutine path."""

from __future__ import annotations

import asyncio
from typing import Any

from mesh_dp.balancer import EndpointState
from mesh_dp.http.attempt import RequestPolicy
from mesh_dp.http.conn import Conn
from mesh_dp.http.parse import RequestHead, RequestParser
from mesh_dp.http.pool import Pool
from mesh_dp.http.proxy import HttpProxy
from mesh_dp.http.retry import RetryPolicy
from mesh_dp.http.timeouts import HttpTimeouts
from mesh_dp.stats import HttpStats
from meshfed.dpconfig.model import Endpoint

OK = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class Cluster:
    """One endpoint with one idle pooled connection (`up`)."""

    def __init__(self, timeouts: HttpTimeouts) -> None:
        self.pool = Pool()
        self.name = "backend"
        self.endpoint = EndpointState(Endpoint("127.0.0.1", 9, ""))
        self.statuses: list[int] = []
        self._policy = RequestPolicy(1.0, 1, 60.0, 16, timeouts, RetryPolicy())
        self.up = Conn(None)
        self.up_transport = Transport()
        self.up.connection_made(self.up_transport)
        self.pool.track(self.endpoint.key, self.up)
        self.pool.give(self.endpoint.key, self.up)

    @property
    def sent_up(self) -> bytes:
        return b"".join(self.up_transport.out)

    def policy(self) -> RequestPolicy:
        return self._policy

    def choose(self, request: RequestHead, tried: Any) -> EndpointState | None:
        return None if tried else self.endpoint

    async def open(self, endpoint: EndpointState, timeout: float) -> Conn:
        raise OSError("no new connections in this test")

    def connect_failed(self, endpoint: EndpointState) -> None:
        pass

    def connect_succeeded(self, endpoint: EndpointState) -> None:
        pass

    def finished(self, endpoint: EndpointState, status: int) -> None:
        self.statuses.append(status)


NO_TIMEOUTS = HttpTimeouts()


async def serving(
    timeouts: HttpTimeouts = NO_TIMEOUTS,
) -> tuple[Cluster, HttpStats, Conn, Transport, asyncio.Task[None]]:
    cluster = Cluster(timeouts)
    stats = HttpStats()
    proxy = HttpProxy(cluster, stats, "outbound")
    down, transport = Conn(RequestParser()), Transport()
    down.connection_made(transport)
    task = asyncio.create_task(proxy.serve(down))
    await asyncio.sleep(0)
    return cluster, stats, down, transport, task


async def test_a_plain_request_is_relayed_and_its_connection_pooled_again() -> None:
    cluster, stats, down, client, task = await serving()
    down.data_received(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert cluster.sent_up == b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    cluster.up.data_received(OK)
    assert client.out == [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]  # one write
    assert cluster.statuses == [200] and stats.statuses["2xx"] == 1
    assert cluster.pool.idle_count() == 1 and not task.done()
    task.cancel()


async def test_pipelined_requests_are_answered_in_order() -> None:
    cluster, stats, down, client, task = await serving()
    down.data_received(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert cluster.sent_up.count(b"GET ") == 1  # the second waits for the first answer
    cluster.up.data_received(OK)
    assert cluster.sent_up.endswith(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    cluster.up.data_received(OK.replace(b"\r\n\r\nok", b"\r\n\r\nOK"))
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    assert client.out == [head + b"ok", head + b"OK"]
    assert stats.statuses["2xx"] == 2
    task.cancel()


async def test_a_body_in_pieces_goes_up_whole_with_its_head() -> None:
    cluster, _, down, _, task = await serving()
    down.data_received(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    assert cluster.sent_up == b""
    down.data_received(b"cd")
    assert cluster.sent_up.endswith(b"\r\n\r\nabcd")
    assert len(cluster.up_transport.out) == 1
    task.cancel()


async def test_a_stalled_body_is_answered_504_at_stream_idle_timeout() -> None:
    cluster, stats, down, client, task = await serving(HttpTimeouts(stream_idle=0.05))
    down.data_received(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    await asyncio.wait_for(task, 5.0)  # the connection ends
    answer = b"".join(client.out)
    assert answer.startswith(b"HTTP/1.1 504 ") and b"streamIdleTimeout" in answer
    assert client.closed and cluster.sent_up == b""
    assert stats.errors["timeout"] == 1


async def test_an_upgrade_request_goes_to_the_coroutine_path() -> None:
    cluster, _, down, _, task = await serving()
    down.data_received(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n")
    await asyncio.sleep(0.01)
    # proxy.py rebuilt the head (the callback path only forwards heads as received)
    assert b"Connection: upgrade\r\n" in cluster.sent_up and b"Upgrade: ws" in cluster.sent_up
    task.cancel()
