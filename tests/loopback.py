"""A bounded HTTP server on 127.0.0.1 for tests that stand in for a remote service (figshare, the MP API): it
binds a free port, serves from a daemon thread, stops itself after ``lifetime_s`` seconds and shuts down on
leaving the ``with`` block. Subclasses give the handler and the URL path."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], lifetime_s: float, path: str = "/") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.watchdog = threading.Timer(lifetime_s, self.server.shutdown)

    def __enter__(self):
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()
