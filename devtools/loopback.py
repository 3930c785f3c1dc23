"""Loopback HTTP servers for the local tools: one thread each, quick to stop."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    # headers and body are written separately: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every response
    handler.disable_nagle_algorithm = True
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


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
