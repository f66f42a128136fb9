"""Counting a page's orders without parsing it (`pages.order_count`): the count is exact and a body cut short
is never taken for a complete one, so the client still retries it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.pages import order_count, scan_order_count
from cancel_pipeline_tests.test_client_support import TOKEN

# Strings full of what the scan looks at: quotes, backslashes, brackets, commas, and non-ASCII text.
tricky_text = st.text(alphabet='ab"\\{}[],: \n\u00e9\u2028/', max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4),
    max_leaves=20,
)


def dumps_variants(document: Any) -> list[bytes]:
    """The same document as Shopify, orjson and Python's json module (with and without spacing) write it."""
    return [
        orjson.dumps(document),
        json.dumps(document).encode(),
        json.dumps(document, ensure_ascii=False).encode(),
        json.dumps(document, indent=2).encode(),
        b" \r\n" + json.dumps(document, separators=(",", ":")).encode() + b"\n\t ",
    ]


@settings(max_examples=150, deadline=None)
@given(orders=st.lists(json_values, max_size=6))
def test_count_is_the_array_length_and_no_prefix_passes_as_complete(orders: list[Any]) -> None:
    for body in dumps_variants({"orders": orders}):
        assert scan_order_count(body) == len(orders)
        assert order_count(body) == len(orders)
        complete = body.rstrip(b" \t\r\n")
        for cut in range(len(complete)):
            assert scan_order_count(complete[:cut]) is None, complete[:cut]


@pytest.mark.parametrize(
    "body",
    [
        b'{"orders": [{"id": 1},',  # a 200 cut short
        b'{"orders":[{"note":"}]}',  # cut inside a string whose text closes the brackets
        b'{"orders":[{"note":"a\\"}]}',  # the same, behind an escaped quote
        b'{"orders":[{"id":1}]',
        b"<html><body>Bad Gateway</body></html>",
        b"",
    ],
)
def test_incomplete_bodies_are_not_json_so_the_client_retries_them(body: bytes) -> None:
    assert scan_order_count(body) is None
    with pytest.raises(orjson.JSONDecodeError):
        order_count(body)


@pytest.mark.parametrize(
    "body",
    [b'{"orders":null}', b'{"orders":{}}', b'{"order":[]}', b"[]", b'{"errors":"Not Found"}'],
)
def test_json_of_another_shape_has_no_count(body: bytes) -> None:
    assert scan_order_count(body) is None
    assert order_count(body) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"orders":[]}', 0),
        (b'{ "orders" : [ ] }', 0),
        (b'{"orders":[1,"a,b",[2,3],{"x":[4,5]}]}', 4),
        (b'{"orders":[{"t":"\\\\"},{"t":"\\\\\\""}]}', 2),  # escaped backslashes before closing quotes
        (b'{"orders":[{"id":1}],"link":"x"}', 1),  # another member: counted by the full parse instead
        (b'{"link":"x","orders":[{"id":1},{"id":2}]}', 2),
    ],
)
def test_counts(body: bytes, expected: int) -> None:
    assert order_count(body) == expected == len(orjson.loads(body)["orders"])


def test_mismatched_brackets_are_left_to_the_full_parse() -> None:
    body = b'{"orders":[{"id":1]}]}'
    assert scan_order_count(body) is None
    with pytest.raises(orjson.JSONDecodeError):
        order_count(body)


def test_the_client_pages_bodies_the_scan_declines() -> None:
    """A complete body the scan does not prove (an extra member) is still counted, by a full parse."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"orders":[{"id":1},{"id":2}],"note":"extra"}')

    client = ShopifyClient(
        "unit-shop", access_token=TOKEN, transport=httpx.MockTransport(handler), sleep=lambda s: None
    )
    [page] = list(client.iter_order_pages())
    assert page.order_count == 2 and client.stats.retries == 0
