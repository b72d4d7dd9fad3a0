"""What the two request pipelines share (proxy.py's coroutines, fast.py's callbacks): how an
attempt ended, the request body's progress, and the hand-over from the callback path to the
coroutine path. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mesh_dp.balancer import EndpointState
from mesh_dp.http.accesslog import Record
from mesh_dp.http.parse import ProtocolError, RequestHead, ResponseHead
from mesh_dp.http.retry import Failure, Replay, RetryPolicy, RetryState
from mesh_dp.http.timeouts import Deadlines, Expiry, HttpTimeouts

NO_TIMEOUTS = HttpTimeouts()
NO_RETRIES = RetryPolicy()


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """Per-request limits, read once per request. MeshTimeout/MeshRetry `http` fields join
    here (requestTimeout, perTryTimeout, numRetries, backOff...)."""

    connect_timeout: float
    max_connect_attempts: int
    response_timeout: float  # longest quiet time of a keep-alive client (0: none)
    max_connections: int  # open upstream connections at once
    timeouts: HttpTimeouts = NO_TIMEOUTS  # MeshTimeout http (timeouts.py)
    retry: RetryPolicy = NO_RETRIES  # MeshRetry http (retry.py)


class Failed(Exception):
    """The sidecar answers the request itself with `kind`; `failure`: how the attempt failed,
    when MeshRetry may try again (retry.py)."""

    def __init__(self, kind: str, detail: str, failure: Failure | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.failure = failure


class Retry(Exception):
    """A reused connection died before answering: try again on a fresh one."""


class RetryStatus(Exception):
    """The answer's status asks MeshRetry for another attempt (its connection is dropped)."""


class Expired(Exception):
    def __init__(self, kind: Expiry | None) -> None:
        super().__init__(kind.value if kind else "timeout")
        self.kind = kind


def no_answer(service: str, kind: Expiry | None) -> Failed:
    """An attempt's deadline passed before the response head."""
    if kind is Expiry.TRY:
        return Failed("timeout", f"no answer from {service}: perTryTimeout", Failure.TIMEOUT)
    return Failed("timeout", f"no answer from {service}: {Expired(kind)}")


@dataclass(slots=True)
class Upload:
    """The request body's progress, shared by the two halves of a round trip and by the
    attempts of one request."""

    deadlines: Deadlines
    done: bool = False
    failed: ProtocolError | None = None
    client_gone: bool = False
    client_idle: bool = False  # the client was quiet for streamIdleTimeout mid-body
    continued: bool = False  # a 100 Continue was relayed to the client
    replay: Replay | None = None  # the body kept for a retry
    retry_slot: bool = False  # the current attempt is a retry holding a maxRetries slot
    # MeshHTTPRoute ResponseHeaderModifier: the final response head as it goes down
    respond: Callable[[ResponseHead], ResponseHead] | None = None


@dataclass(slots=True)
class Slow:
    """The callback path leaves the next request (still queued) to the coroutine path;
    `hint`: the endpoint it already chose (no idle connection to it was pooled)."""

    hint: EndpointState | None = None


@dataclass(slots=True)
class Resume:
    """The callback path made a request's first attempt and the coroutine path goes on from
    its outcome (a retry, an error answer). The request holds its maxRequests slot."""

    head: RequestHead
    record: Record
    start: float
    policy: RequestPolicy
    upload: Upload
    retry: RetryState
    outcome: Failed | Retry | RetryStatus
    used: list[EndpointState] = field(default_factory=list)
