"""Loopback HTTP servers for the local tools: one thread each, quick to stop."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no error of ours
            super().handle_error(request, client_address)


def serve(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    # headers and body are written separately: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every response
    handler.disable_nagle_algorithm = True
    server = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def serve_calls(on_request: Callable[[BaseHTTPRequestHandler, bytes], None], port: int = 0) -> ThreadingHTTPServer:
    """A quiet HTTP/1.1 server that hands every request, whatever its method, and its body (read
    whole, so that a kept-alive connection stays in step) to `on_request`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            on_request(self, self.rfile.read(length) if length else b"")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any

    return serve(Handler, port)


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict | None = None) -> None:
    """Writes a whole response; Content-Length is always the body's."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        if name.lower() != "content-length":
            handler.send_header(name, str(value))
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def shutdown(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any `window` seconds (a sliding window over sorted times)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
