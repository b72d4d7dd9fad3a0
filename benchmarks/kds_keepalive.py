"""Does a KDS server notice a frozen peer through keepalive, with grpcio's options as set?

    .venv/bin/python benchmarks/kds_keepalive.py [--wait 70]

Two gRPC servers with `meshfed.kds.stream.grpc_options`, one without
`grpc.http2.ping_timeout_ms`, each with one client process holding a stream open. Both
clients are frozen (SIGSTOP: the kernel still ACKs TCP, only a ping needs the process); the
time until each server's stream ends is printed. Not a test: it takes the keepalive bound
(15 s + 10 s) and prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from meshfed.kds.stream import grpc_options

PING_TIMEOUT = "grpc.http2.ping_timeout_ms"
REPO = Path(__file__).resolve().parent.parent
CLIENT = """
import asyncio, sys, grpc
from meshfed.kds.stream import grpc_options
async def main():
    options = grpc_options(1 << 20)
    if sys.argv[2] == "0":
        options = [o for o in options if o[0] != "grpc.http2.ping_timeout_ms"]
    channel = grpc.aio.insecure_channel("127.0.0.1:" + sys.argv[1], options=options)
    async def requests():
        yield b"a"
        await asyncio.Event().wait()
    call = channel.stream_stream("/bench.Keepalive/Stream")(requests())
    await call.read()
    print("streaming", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def options(ping_timeout: bool) -> list[tuple[str, int]]:
    return [o for o in grpc_options(1 << 20) if ping_timeout or o[0] != PING_TIMEOUT]


async def serve(
    ping_timeout: bool, ended: dict[bool, float], both: asyncio.Event
) -> tuple[grpc.aio.Server, int]:
    async def stream(requests: AsyncIterator[bytes], _: object) -> AsyncIterator[bytes]:
        try:
            async for _ in requests:
                yield b"x"
        finally:
            ended[ping_timeout] = time.monotonic()
            if len(ended) == 2:
                both.set()

    handler = grpc.method_handlers_generic_handler(
        "bench.Keepalive", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )
    server = grpc.aio.server(options=options(ping_timeout))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=70.0, help="longest wait, seconds")
    args = parser.parse_args()
    ended: dict[bool, float] = {}
    both = asyncio.Event()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    clients: list[asyncio.subprocess.Process] = []
    servers = []
    try:
        for ping_timeout in (False, True):
            server, port = await serve(ping_timeout, ended, both)
            servers.append(server)
            clients.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-c", CLIENT, str(port), str(int(ping_timeout))),
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                )
            )
        for client in clients:
            assert client.stdout is not None
            await client.stdout.readline()  # its stream is open
        for client in clients:
            os.kill(client.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.wait):
                await both.wait()
        for ping_timeout in (False, True):
            what = "with ping_timeout_ms" if ping_timeout else "keepalive_timeout_ms only"
            when = ended.get(ping_timeout)
            took = f"{when - frozen:.1f} s" if when else f"never (waited {args.wait:g} s)"
            print(f"{what}: the server's stream ended after {took}")
    finally:
        for client in clients:
            client.kill()
            await client.wait()
        for server in servers:
            await server.stop(None)


if __name__ == "__main__":
    asyncio.run(main())
