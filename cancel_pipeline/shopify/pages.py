"""What the Shopify client hands back: one fetched page of orders, and the client's running counters.

`order_count` counts a page's orders without building them: parsing a page into Python objects costs
far more CPU than the client needs, and holds the GIL against the other page streams. The warehouse
parses every body once anyway, when it lands (and fails the landing on a body that is not JSON), so the
client only proves what it uses: the body is a complete `{"orders": [...]}` object, and how many elements
the array has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import orjson

from cancel_pipeline.shopify.graphql_shape import rest_orders


@dataclass(frozen=True)
class OrderPage:
    """One page of `GET orders.json`, kept verbatim so raw assets can land exactly what Shopify sent."""

    page_number: int
    """1-based position of this page within one iteration."""
    request_path: str
    """Path and query of the request that produced the page (credentials travel in headers, never here)."""
    api_version: str
    """The version Shopify answered with (`X-Shopify-API-Version`), else the configured one."""
    fetched_at: datetime
    """When the response arrived, timezone-aware UTC."""
    body: bytes
    """The response body verbatim: `{"orders": [...]}` (REST), or the GraphQL page as `graphql.py` lands it."""
    order_count: int
    api: str = "rest"
    """The API that produced the page: `rest` or `graphql`."""
    operation: str = "orders"
    """What produced it: REST `orders`; GraphQL `orders` (the connection), `nodes` (by id) or `bulk`."""

    def orders(self) -> list[dict]:
        """The order objects of the page in REST's spelling, parsed on demand so callers that land raw bytes
        never pay for it."""
        if self.api == "graphql":
            return rest_orders(self.body, self.operation)
        return orjson.loads(self.body)["orders"]


@dataclass
class ClientStats:
    """Cumulative counters since the client was created (or its stats were reset)."""

    requests: int = 0
    """HTTP requests sent, retries and token exchanges included."""
    retries: int = 0
    """Requests sent again after a 429, a 5xx, a timeout, a reset or a truncated body."""
    throttled_429: int = 0
    rate_limit_wait_s: float = 0.0
    """Seconds spent waiting for the leaky bucket or a `Retry-After`, not backoff after failures."""
    bytes_received: int = 0


def order_count(body: bytes) -> int | None:
    """How many elements the `orders` array of an `orders.json` body has; None for JSON of another shape.

    Raises `orjson.JSONDecodeError` when the body is not complete JSON (a truncated body, an HTML page), so
    the caller retries it as before. A body `scan_order_count` proves complete is counted without parsing;
    any other body is parsed in full, which gives exactly the answers of a full parse.
    """
    count = scan_order_count(body)
    if count is not None:
        return count
    return parsed_order_count(body)


def parsed_order_count(body: bytes) -> int | None:
    """`order_count` by a full parse: also proves every number and literal of the body, which the byte scan
    does not. Raises `orjson.JSONDecodeError` for a body that is not JSON."""
    parsed = orjson.loads(body)
    orders = parsed.get("orders") if isinstance(parsed, dict) else None
    return len(orders) if isinstance(orders, list) else None


# `{"orders": [` at the start and `]}` at the end; JSON whitespace only around the tokens.
_HEAD = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"orders"[ \t\n\r]*:[ \t\n\r]*\[')
_TAIL = re.compile(rb"\][ \t\n\r]*\}[ \t\n\r]*\Z")
_EMPTY_ARRAY = re.compile(rb"[ \t\n\r]*\]")
_TAIL_WINDOW = 64
# An escape is a backslash and the character after it (`\"`, `\\`, `\u`...); matched left to right, a run
# of backslashes pairs up as JSON reads it, so dropping the pairs leaves only the quotes that delimit strings.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# Everything but the bytes that carry the structure: quotes, brackets and commas.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"{}[],')
# Depth change of each byte: +1 opens an object or array, -1 closes one.
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[list(b"{[")] = 1
_DEPTH_STEP[list(b"}]")] = -1
_COMMA = ord(",")
# A closing bracket is its opening one plus 2 in ASCII: `{` 123 / `}` 125, `[` 91 / `]` 93.
_CLOSE_MINUS_OPEN = 2


def scan_order_count(body: bytes) -> int | None:
    """The element count of a body proven to be a complete `{"orders": [...]}` object; None when not proven.

    What is proven, with C-speed byte operations and numpy, never a Python loop over the body: the body
    starts with `{"orders":[` and ends with `]}`; every string is closed (an even number of unescaped
    quotes); outside strings, brackets nest and match (`{` with `}`, `[` with `]`), the array closes only at
    the end, and the object holds nothing else. A body cut short anywhere fails one of these: it ends inside
    a string (odd quotes) or with a bracket still open. The count is the number of commas directly inside
    the array plus one (zero for an empty array), i.e. `len(orders)` whatever the elements are. Numbers and
    literals are not checked: a body damaged inside one but complete otherwise fails at landing, where the
    warehouse parses every page.
    """
    head = _HEAD.match(body)
    if head is None or _TAIL.search(body, max(0, len(body) - _TAIL_WINDOW)) is None:
        return None
    unescaped = _ESCAPE.sub(b"", body) if b"\\" in body else body
    # Dropping a pair of adjacent quotes changes no other byte's side of a string (inside or outside), and
    # most strings hold no structural byte, so their quotes pair up and go, leaving few to split on.
    pieces = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"").split(b'"')
    if len(pieces) % 2 == 0:  # an odd number of quotes: a string never closed
        return None
    marks = np.frombuffer(b"".join(pieces[0::2]), np.uint8)  # the even pieces lie outside strings
    step = _DEPTH_STEP[marks]
    depth = np.cumsum(step, dtype=np.int32)
    # `{[` opens at depths 1 and 2, `]}` closes back to 1 and 0; in between nothing may close the array.
    if len(marks) < 4 or depth[-1] != 0 or (len(marks) > 4 and depth[2:-2].min() < 2):
        return None
    # Matching types: ordered by nesting level (stable), a level's brackets alternate open, close, open...
    # (the depth walk guarantees that), so each opening bracket is followed by its own closing one.
    brackets = step != 0
    level = (depth + (step < 0))[brackets]
    ordered = marks[brackets][np.argsort(level, kind="stable")]
    if not np.array_equal(ordered[0::2] + _CLOSE_MINUS_OPEN, ordered[1::2]):
        return None
    if _EMPTY_ARRAY.match(body, head.end()):
        return 0
    return int(np.count_nonzero(depth[marks == _COMMA] == 2)) + 1
