"""OTLP/gRPC (Kuma's bare `host:port` endpoints): a unary call on a kept HTTP/2 connection
driven by the `h2` state machine the proxies already use for their config stream
(meshfed/proxy/h2state.py), not grpcio, which a sidecar may not import (decision 34): the
request is one DATA frame sequence ended with END_STREAM, the answer's `grpc-status` trailer
says whether it was taken. Imported by mesh_dp/otlp/transport.py for a gRPC endpoint only.
"""

from __future__ import annotations

import contextlib
import socket

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from mesh_dp.otlp.transport import SERVICES, ExportError, Idle
from meshfed.policy.otlp import Endpoint
from meshfed.proxy.h2state import frame


def _headers(raw: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw if isinstance(raw, list) else []:
        out[k.decode() if isinstance(k, bytes) else str(k)] = (
            v.decode() if isinstance(v, bytes) else str(v)
        )
    return out


class Grpc:
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self._sock: socket.socket | None = None
        self._h2: h2.connection.H2Connection | None = None

    def connect(self) -> tuple[socket.socket, h2.connection.H2Connection]:
        if self._sock is not None and self._h2 is not None:
            return self._sock, self._h2
        e = self.endpoint
        sock = socket.create_connection((e.host, e.port), self.timeout)
        sock.settimeout(self.timeout)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        self._sock, self._h2 = sock, conn
        return sock, conn

    def _pump(self, sock: socket.socket, conn: h2.connection.H2Connection) -> list[object]:
        data = sock.recv(65536)
        if not data:
            raise ExportError(f"{self.endpoint.url('')} closed the connection")
        events: list[object] = list(conn.receive_data(data))
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        return events

    def send(self, signal: str, body: bytes, idle: Idle = None) -> None:
        """One unary Export call (`idle` is not called: the h2 exchange is not pipelined)."""
        try:
            self._send(signal, body)
        except h2.exceptions.H2Error as exc:
            raise ExportError(f"{self.endpoint.url(signal)}: {exc}") from None

    def _send(self, signal: str, body: bytes) -> None:
        sock, conn = self.connect()
        sid = conn.get_next_available_stream_id()
        e = self.endpoint
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", SERVICES[signal]),
                (":authority", e.url(signal)),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        payload = memoryview(frame(body))
        status: str | None = None
        ended = False
        while payload or not ended:
            if payload:
                n = min(
                    len(payload), conn.local_flow_control_window(sid), conn.max_outbound_frame_size
                )
                if n > 0:
                    conn.send_data(sid, payload[:n].tobytes(), end_stream=n == len(payload))
                    payload = payload[n:]
                    sock.sendall(conn.data_to_send())
                    continue
            for ev in self._pump(sock, conn):
                if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    if ev.stream_id == sid:
                        headers = _headers(ev.headers)
                        status = headers.get("grpc-status", status)
                        if headers.get(":status", "200") != "200":
                            raise ExportError(f"{e.url(signal)} answered HTTP {headers[':status']}")
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    if ev.stream_id == sid:
                        ended = True
                        if isinstance(ev, h2.events.StreamReset):
                            raise ExportError(f"{e.url(signal)} reset the call")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise ExportError(f"{e.url(signal)} closed the connection (GOAWAY)")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        if status != "0":
            raise ExportError(f"{e.url(signal)} answered gRPC status {status or 'none'}")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = self._h2 = None
