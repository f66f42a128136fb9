"""Serving the demo store over HTTP with the standard library's threaded WSGI server."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: benchmarks send thousands of requests."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(store: WSGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `store` (a DemoStore or any WSGI app wrapping one) in a background thread.

    Yields the base URL, e.g. http://127.0.0.1:54321; the server is shut down and closed on exit.
    """
    server = make_server(host, port, store, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_forever(store: WSGIApp, host: str, port: int) -> None:
    """Serve in the foreground until interrupted."""
    with make_server(
        host, port, store, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    ) as server:
        server.serve_forever()
