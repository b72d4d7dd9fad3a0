"""An HTTP/1.1 test application for the sidecar's HTTP tests (run as a module; no tests).

    python -m tests.integration.http_backend --address HOST:PORT --name NAME

Built on http.server (keep-alive, `Expect: 100-continue` handled by the standard library):
- `GET /who`: JSON with the instance name and the client address (which connection);
- `POST /echo`: the request body back (Content-Length or chunked request bodies); with
  `?chunked=1` the answer is chunked too;
- `GET /chunks?n=N`: N chunks of `chunk-<i>\\n`, chunked (with `&ms=M`: M ms apart, the
  first too);
- `GET /status/N`: status N, empty body;
- `GET /ws` with `Upgrade: websocket`: 101, then every byte echoed back (a tunnel);
- `GET /health`: the status set by `PUT /control/health/N` (200 at first);
- `PUT /control/fail/N`: every later GET but /health and /control answers N (0: normally);
- `PUT /control/delay/MS`: every later GET but /health and /control waits MS ms first;
- `GET /sleep/S`: answers after S seconds; `GET /control`: JSON with the requests in flight;
- `GET /control/arrivals`: JSON, for each request target (path and query) the
  `time.monotonic()` of every GET to it but /control (the clock is the host's, shared by
  processes: a test merges the lists of several instances);
- `GET /slow?ms=N`: answers after N milliseconds (with `&status=S`: status S, empty body);
- `GET` or `POST /flaky/N`: every other request to that path (the first, third, ...) gets
  status N, the others 200 with the instance's JSON (a deterministic 50 % failure).

`--zone` is accepted and ignored (the cross-zone support passes it to every application).
"""

from __future__ import annotations

import argparse
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall
    name = ""
    control = {"health": 200, "fail": 0, "inflight": 0, "delay": 0}
    hits: dict[str, int] = {}
    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()

    def _flaky(self, path: str) -> bool:
        """True when this request to a /flaky/N path must fail (every other one)."""
        with self.lock:
            n = self.hits.get(path, 0)
            self.hits[path] = n + 1
        return n % 2 == 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length)

    def _chunked(self, parts: list[bytes], pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for p in parts:
            time.sleep(pause)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_PUT(self) -> None:
        parts = urlsplit(self.path).path.split("/")  # /control/<what>/<n>
        if len(parts) == 4 and parts[1] == "control" and parts[2] in ("health", "fail", "delay"):
            self.control[parts[2]] = int(parts[3])
            self._send(200, json.dumps(self.control).encode())
            return
        self._send(404, b"")

    def do_GET(self) -> None:
        counted = not self.path.startswith("/control")
        with self.lock:
            self.control["inflight"] += counted
            if counted:
                self.arrivals.setdefault(self.path, []).append(time.monotonic())
        try:
            self._get()
        finally:
            with self.lock:
                self.control["inflight"] -= counted

    def _get(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/control":
            self._send(200, json.dumps(self.control).encode())
            return
        if url.path == "/control/arrivals":
            with self.lock:
                body = json.dumps(self.arrivals).encode()
            self._send(200, body)
            return
        if url.path == "/health":
            self._send(self.control["health"], json.dumps({"name": self.name}).encode())
            return
        if self.control["fail"]:
            self._send(self.control["fail"], json.dumps({"name": self.name}).encode())
            return
        if self.control["delay"]:
            time.sleep(self.control["delay"] / 1000)
        if url.path.startswith("/sleep/"):
            time.sleep(float(url.path.rsplit("/", 1)[1]))
        if url.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while data := self.connection.recv(65536):
                self.connection.sendall(data)
            self.close_connection = True
            return
        if url.path == "/chunks":
            n = int(query.get("n", ["3"])[0])
            pause = int(query.get("ms", ["0"])[0]) / 1000
            self._chunked([b"chunk-%d\n" % i for i in range(n)], pause)
            return
        if url.path == "/slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            if "status" in query:
                self._send(int(query["status"][0]), b"")
                return
        if url.path.startswith("/flaky/") and self._flaky(url.path):
            self._send(int(url.path.rsplit("/", 1)[1]), b"")
            return
        if url.path.startswith("/status/"):
            self._send(int(url.path.rsplit("/", 1)[1]), b"")
            return
        body = {
            "name": self.name,
            "client": f"{self.client_address[0]}:{self.client_address[1]}",
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        self._send(200, json.dumps(body).encode())

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path.startswith("/flaky/") and self._flaky(url.path):
            self._send(int(url.path.rsplit("/", 1)[1]), b"")
            return
        if "chunked=1" in url.query:
            self._chunked([body[i : i + 1000] for i in range(0, len(body), 1000)])
            return
        self._send(200, body, "application/octet-stream")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--zone", default="")
    args = parser.parse_args()
    host, port = args.address.rsplit(":", 1)
    Handler.name = args.name
    socketserver.TCPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"listening on {args.address}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
