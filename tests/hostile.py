"""Hostile endpoints on loopback, for the error-path tests: a closed port, a
port that accepts TCP and says nothing, one that sends an SSH banner and then
nothing, and a real HTTP server (Python's http.server) where SSH or the
Kubernetes API is expected. Each runs in a thread of the test process and
stops when its context ends."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _listener(greeting: bytes | None) -> Iterator[int]:
    """Accept connections, send ``greeting`` (if any), then never answer."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if greeting:
                conn.sendall(greeting)
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


def silent_port() -> contextlib.AbstractContextManager[int]:
    """Accepts TCP connections and never sends a byte (a stuck daemon, a
    firewall that accepts then drops)."""
    return _listener(None)


def banner_only_port() -> contextlib.AbstractContextManager[int]:
    """Sends an OpenSSH banner, then nothing (sshd that cannot fork)."""
    return _listener(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b'{"kind":"Status","status":"Failure","message":"not a Kubernetes API"}'
        self.send_response(418)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def http_port() -> Iterator[int]:
    """A real HTTP server (Python's http.server) where something else is expected."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
