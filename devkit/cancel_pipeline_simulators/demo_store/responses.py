"""Small WSGI plumbing: a response value, JSON bodies, query and body parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson

JSON_TYPE = "application/json; charset=utf-8"
BAD_GATEWAY_HTML = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
)


@dataclass
class Response:
    """What to send: status, headers, body; `truncate` cuts the body under a full Content-Length, `corrupt`
    damages one number in it (same length, brackets and quotes intact: complete, yet not JSON)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON_TYPE
    truncate: bool = False
    corrupt: bool = False

    def status_line(self) -> str:
        """E.g. "429 Too Many Requests" (codes Python does not name get a generic phrase)."""
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Error"
        return f"{self.status} {phrase}"


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON response."""
    return Response(status, orjson.dumps(payload), list(headers or []))


def query_params(environ: dict[str, Any]) -> dict[str, str]:
    """Query parameters, the last value winning when one repeats."""
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def read_body(environ: dict[str, Any]) -> bytes:
    """The request body (empty when there is none)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def base_url(environ: dict[str, Any]) -> str:
    """The scheme and host the request came in on, so links point back where the client is talking."""
    host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"


def error_response(status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    """A scripted 5xx as Shopify's edge sends it: 502 as an HTML page, the others as JSON."""
    if status == 502:
        return Response(502, BAD_GATEWAY_HTML, list(headers or []), content_type="text/html; charset=utf-8")
    messages = {500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}
    return json_response(status, {"errors": messages.get(status, "Error")}, headers)
