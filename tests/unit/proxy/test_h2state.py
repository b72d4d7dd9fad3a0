"""The sans-io state of one gRPC call (meshfed/proxy/h2state.py), driven directly: bytes in,
events out, no socket. The server side is h2's own server state machine, in memory."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from hyperframe.frame import GoAwayFrame, PingFrame

from meshfed.proxy.h2state import (
    MAX_UNSENT,
    SEND_MARK,
    CallEnded,
    CallFailed,
    CallState,
    Draining,
    Event,
    MessageReceived,
    PingAcked,
    RpcError,
    frame,
)

PATH = "/test.Echo/Stream"
GRPC_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
OK_TRAILERS = [("grpc-status", "0")]


class Server:
    """The peer: an h2 server connection that the test scripts frame by frame."""

    def __init__(self) -> None:
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.stream_id = 0
        self.data = bytearray()  # DATA the client sent
        self.pings = 0
        self.resets: list[int] = []

    def take(self, client: CallState) -> None:
        """Reads everything the client has to send."""
        for event in self.conn.receive_data(client.data_to_send()):
            if isinstance(event, h2.events.RequestReceived):
                self.stream_id = event.stream_id
            elif isinstance(event, h2.events.DataReceived):
                self.data += event.data or b""
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, h2.events.PingReceived):
                self.pings += 1
            elif isinstance(event, h2.events.StreamReset):
                self.resets.append(event.error_code)

    def out(self) -> bytes:
        return self.conn.data_to_send()


def connected(**kwargs: int) -> tuple[CallState, Server, list[Event]]:
    client = CallState("cp:5678", PATH, max_message=kwargs.pop("max_message", 1 << 20), **kwargs)
    client.start()
    server = Server()
    server.take(client)
    server.conn.send_headers(server.stream_id, GRPC_HEADERS)
    events = client.receive(server.out())
    server.take(client)
    return client, server, events


def messages(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, MessageReceived)]


def test_messages_both_ways_and_a_clean_end() -> None:
    client, server, events = connected()
    assert events == []
    client.send_message(b"hello")
    server.take(client)
    assert bytes(server.data) == frame(b"hello")
    server.conn.send_data(server.stream_id, frame(b"one") + frame(b"tw"))
    # Split anywhere: a message and a frame may straddle reads.
    wire = server.out()
    got = client.receive(wire[:20]) + client.receive(wire[20:])
    assert messages(got) == [b"one", b"tw"]
    server.conn.send_headers(server.stream_id, OK_TRAILERS, end_stream=True)
    assert client.receive(server.out()) == [CallEnded()]
    assert client.ended and client.error is None
    with pytest.raises(RpcError, match="CANCELLED"):
        client.send_message(b"late")


def test_a_failed_status_and_a_trailers_only_answer_fail_the_call() -> None:
    client, server, _ = connected()
    server.conn.send_headers(
        server.stream_id, [("grpc-status", "3"), ("grpc-message", "bad%20hello")], end_stream=True
    )
    events = client.receive(server.out())
    assert len(events) == 1 and isinstance(events[0], CallFailed)
    assert (events[0].error.code, events[0].error.details) == ("INVALID_ARGUMENT", "bad hello")

    client = CallState("cp:5678", PATH, max_message=1024)
    client.start()
    server = Server()
    server.take(client)
    trailers_only = [(":status", "200"), ("content-type", "application/grpc")]
    server.conn.send_headers(server.stream_id, [*trailers_only, ("grpc-status", "16")])
    [failed] = client.receive(server.out())
    assert isinstance(failed, CallFailed) and failed.error.code == "UNAUTHENTICATED"


def test_a_message_over_the_limit_fails_the_call() -> None:
    client, server, _ = connected(max_message=10)
    server.conn.send_data(server.stream_id, frame(b"x" * 11))
    [failed] = client.receive(server.out())
    assert isinstance(failed, CallFailed) and failed.error.code == "RESOURCE_EXHAUSTED"


# --- GOAWAY (issue 16: any GOAWAY failed the sidecar's config stream at once) --------------


def goaway(last_stream_id: int, error_code: int = 0) -> bytes:
    return GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code).serialize()


def test_a_graceful_goaway_lets_the_open_call_finish() -> None:
    client, server, _ = connected()
    server.conn.send_data(server.stream_id, frame(b"before"))
    before = server.out()
    server.conn.send_data(server.stream_id, frame(b"after"))
    server.conn.send_headers(server.stream_id, OK_TRAILERS, end_stream=True)
    # grpcio's graceful shutdown: a GOAWAY naming every stream, later one naming the last.
    wire = before + goaway(0x7FFFFFFF) + goaway(server.stream_id) + server.out()
    events: list[Event] = []
    for i in range(len(wire)):  # one byte at a time: a GOAWAY cut anywhere is still found
        events += client.receive(wire[i : i + 1])
    assert events == [
        MessageReceived(b"before"),
        Draining(0x7FFFFFFF),
        MessageReceived(b"after"),
        CallEnded(),
    ]
    assert client.draining and client.error is None
    # The call could still send while draining.
    server.take(client)


def test_writes_go_on_while_the_server_drains() -> None:
    client, server, _ = connected()
    client.receive(goaway(server.stream_id))
    client.send_message(b"ack")
    server.take(client)
    assert bytes(server.data) == frame(b"ack")


@pytest.mark.parametrize(
    ("last", "code", "says"),
    [
        (0, 0, "NO_ERROR"),  # our stream was never processed: safe to retry elsewhere
        (1, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "ENHANCE_YOUR_CALM"),
        (1, 0xABC, "2748"),  # an error code HTTP/2 does not define
    ],
)
def test_a_goaway_that_drops_the_call_is_unavailable(last: int, code: int, says: str) -> None:
    client, _, _ = connected()
    [failed] = client.receive(goaway(last, code))
    assert isinstance(failed, CallFailed)
    assert failed.error.code == "UNAVAILABLE" and says in failed.error.details


def test_a_malformed_goaway_is_a_protocol_error() -> None:
    client, _, _ = connected()
    short = b"\x00\x00\x04\x07\x00\x00\x00\x00\x00" + b"\x00" * 4  # GOAWAY of 4 bytes
    [failed] = client.receive(short)
    assert isinstance(failed, CallFailed) and failed.error.code == "INTERNAL"


# --- the send buffer is bounded (issue 16: a PING flood grew the client's write buffer) ----


def test_pings_are_answered_and_acks_counted() -> None:
    client, server, _ = connected()
    client.ping()
    server.take(client)
    assert server.pings == 1
    assert client.receive(server.out()) == [PingAcked()]


def test_a_ping_flood_the_peer_does_not_read_fails_the_call() -> None:
    client, _, _ = connected()
    pings = b"".join(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(512))
    events: list[Event] = []
    fed = 0
    while not events and fed < 4 * MAX_UNSENT:  # the driver never takes data_to_send
        events = client.receive(pings)
        fed += len(pings)
    assert len(events) == 1 and isinstance(events[0], CallFailed), f"no failure after {fed}"
    assert "does not read" in events[0].error.details
    assert client.stuck and MAX_UNSENT < client.unsent <= MAX_UNSENT + len(pings)
    assert client.receive(pings) == []  # a failed call takes no more input
    assert client.unsent <= MAX_UNSENT + len(pings)


def test_the_same_pings_taken_as_they_come_are_fine() -> None:
    client, _, _ = connected()
    pings = b"".join(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(512))
    for _ in range(4 * MAX_UNSENT // len(pings)):
        assert client.receive(pings) == []
        client.data_to_send()
    assert client.error is None


def test_our_own_data_waits_in_the_message_queue_not_the_send_buffer() -> None:
    client, server, _ = connected()
    server.conn.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20})
    server.conn.increment_flow_control_window(8 << 20)
    server.conn.increment_flow_control_window(8 << 20, server.stream_id)
    client.receive(server.out())
    server.take(client)  # the settings' ACK: from now on the server takes large frames
    ticket = client.send_message(b"m" * (4 << 20))  # windows allow it all; the mark does not
    assert client.unsent <= SEND_MARK + 64 and not client.stuck
    assert not client.sent(ticket)
    while not client.sent(ticket):
        server.take(client)
    assert client.error is None
    server.take(client)
    assert bytes(server.data) == frame(b"m" * (4 << 20))


# --- flow control and cancelled writes -----------------------------------------------------


def test_a_message_past_the_window_waits_for_a_window_update() -> None:
    client, server, _ = connected()
    ticket = client.send_message(b"a" * 100_000)  # the default window is 65,535
    sent = len(client.data_to_send())
    assert not client.sent(ticket) and sent < 100_000
    server.conn.receive_data(b"")  # nothing new: still waiting
    server.conn.increment_flow_control_window(1 << 20)
    server.conn.increment_flow_control_window(1 << 20, server.stream_id)
    client.receive(server.out())
    assert client.sent(ticket)


def test_a_cancelled_unsent_write_leaves_the_stream_intact() -> None:
    client, server, _ = connected()
    first = client.send_message(b"a" * 65_530)  # 65,535 framed: the whole window
    second = client.send_message(b"b" * 10_000)  # behind the window: nothing of it sent
    assert client.sent(first) and not client.sent(second)
    client.cancel(second)
    assert client.error is None
    server.take(client)
    assert bytes(server.data) == frame(b"a" * 65_530)


def test_a_cancelled_half_sent_write_resets_the_stream() -> None:
    client, server, _ = connected()
    ticket = client.send_message(b"a" * 100_000)
    client.cancel(ticket)
    [failed] = client.take_events()
    assert isinstance(failed, CallFailed) and failed.error.code == "CANCELLED"
    server.take(client)
    assert server.resets == [h2.errors.ErrorCodes.CANCEL]


def test_received_data_is_given_back_as_the_application_reads() -> None:
    client, server, _ = connected()
    acked: list[int] = []  # what the state hands back to h2 (h2 then batches WINDOW_UPDATEs)
    give_back = client._conn.acknowledge_received_data

    def record(size: int, stream_id: int) -> None:
        acked.append(size)
        give_back(size, stream_id)

    client._conn.acknowledge_received_data = record  # type: ignore[method-assign]
    big = frame(b"z" * 200_000)
    for _ in range(4):  # 800 kB of messages unread: more than half the window
        for i in range(0, len(big), 16384):
            server.conn.send_data(server.stream_id, big[i : i + 16384])
        client.receive(server.out())
    # Given back while less than half the window waits unread; the rest waits for the reader.
    assert 400_000 <= sum(acked) <= 4 * len(big) - 200_000
    for _ in range(4):
        client.consumed(200_000)
    assert sum(acked) == 4 * len(big)


def test_closing_sends_a_goaway_and_cancels() -> None:
    client, server, _ = connected()
    client.close()
    assert client.error is not None and client.error.code == "CANCELLED"
    events = server.conn.receive_data(client.data_to_send())
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
