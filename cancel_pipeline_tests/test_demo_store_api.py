"""The demo store's REST Admin API over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline_tests.demo_fixtures import DEMO_NOW, ServedDemoStore

pytestmark = pytest.mark.timeout(60)
NOW = datetime.fromisoformat(DEMO_NOW)
NEXT = re.compile(r'<([^>]+)>; rel="next"')
PREVIOUS = re.compile(r'<([^>]+)>; rel="previous"')


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def http(demo_store_server: ServedDemoStore) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"X-Shopify-Access-Token": demo_store_server.token}, timeout=10) as client:
        yield client


@pytest.fixture
def plus_store_server(demo_clock: FrozenClock) -> Iterator[ServedDemoStore]:
    """A Plus-sized bucket, for tests that page a lot."""
    store = DemoStore(clock=demo_clock, bucket_size=400, leak_rate=20.0)
    with serve(store) as url:
        yield ServedDemoStore(store=store, clock=demo_clock, url=url)


def all_pages(client: httpx.Client, url: str, params: dict[str, Any]) -> list[httpx.Response]:
    pages = [client.get(url, params=params)]
    while match := NEXT.search(pages[-1].headers.get("link", "")):
        pages.append(client.get(match.group(1)))
        assert pages[-1].status_code == 200, pages[-1].text
    return pages


def order_ids(pages: list[httpx.Response]) -> list[Any]:
    return [o["id"] for page in pages for o in page.json()["orders"]]


def order_names(pages: list[httpx.Response]) -> list[str]:
    """Names identify orders even when a malformed record's id is not a usable number."""
    return [o["name"] for page in pages for o in page.json()["orders"]]


def test_headers_and_shop_offset(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    response = http.get(demo_store_server.admin_url("orders.json", "2024-07"), params={"limit": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-shopify-api-version"] == "2024-07"
    assert response.headers["x-shopify-shop-api-call-limit"] == "1/40"
    orders = response.json()["orders"]
    assert len(orders) == 3
    assert all(o["updated_at"].endswith("-05:00") for o in orders if o["updated_at"][0].isdigit())
    assert isinstance(orders[0]["total_price"], str) and "." in orders[0]["total_price"]
    keys = [(o["created_at"], o["id"]) for o in orders]
    assert keys == sorted(keys, reverse=True), "newest first"


def test_status_defaults_to_open(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    window = {"updated_at_min": z(NOW - timedelta(hours=24)), "updated_at_max": z(NOW)}
    count_url = demo_store_server.admin_url("orders/count.json")
    counts = {
        s: http.get(count_url, params={**window, "status": s}).json()["count"]
        for s in ("open", "any", "cancelled", "closed")
    }
    assert http.get(count_url, params=window).json()["count"] == counts["open"]
    assert counts["any"] > counts["open"] > 0 and counts["cancelled"] > 0 and counts["closed"] > 0
    default_list = all_pages(http, demo_store_server.admin_url("orders.json"), {**window, "limit": 250})
    orders = [o for page in default_list for o in page.json()["orders"]]
    assert len(orders) == counts["open"]
    assert all(o["cancelled_at"] is None and o["closed_at"] is None for o in orders)


def test_time_bounds_are_inclusive(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    url = demo_store_server.admin_url("orders.json")
    sample = http.get(url, params={"status": "any", "limit": 1}).json()["orders"][0]
    updated = datetime.fromisoformat(sample["updated_at"])
    exact = {"status": "any", "updated_at_min": updated.isoformat(), "updated_at_max": z(updated)}
    assert sample["id"] in {o["id"] for o in http.get(url, params=exact).json()["orders"]}
    after = {"status": "any", "updated_at_min": z(updated + timedelta(seconds=1))}
    assert sample["id"] not in {o["id"] for o in http.get(url, params=after).json()["orders"]}
    created = datetime.fromisoformat(sample["created_at"])
    by_created = {"status": "any", "created_at_min": z(created), "created_at_max": z(created)}
    assert sample["id"] in {o["id"] for o in http.get(url, params=by_created).json()["orders"]}


def test_many_pages_have_no_duplicates_or_gaps(plus_store_server: ServedDemoStore) -> None:
    window = {"status": "any", "updated_at_min": z(NOW - timedelta(hours=30)), "updated_at_max": z(NOW)}
    with httpx.Client(headers={"X-Shopify-Access-Token": plus_store_server.token}, timeout=10) as http:
        pages = all_pages(http, plus_store_server.admin_url("orders.json"), {**window, "limit": 250})
        count = http.get(plus_store_server.admin_url("orders/count.json"), params=window).json()["count"]
    names = order_names(pages)
    assert len(pages) >= 5
    assert len(names) == len(set(names)) == count
    expected = plus_store_server.store.orders(**window)
    assert names == [o["name"] for o in expected]
    assert 'rel="previous"' not in pages[0].headers["link"] and 'rel="next"' not in pages[-1].headers["link"]


def test_a_burst_sharing_one_second_pages_across_the_250_boundary(
    demo_store_server: ServedDemoStore, http: httpx.Client
) -> None:
    store = demo_store_server.store
    day = store.orders(status="any", updated_at_min=NOW - timedelta(hours=24))
    second, size = Counter(o["updated_at"] for o in day).most_common(1)[0]
    assert size > 250
    window = {"status": "any", "updated_at_min": second, "updated_at_max": second, "limit": 250}
    pages = all_pages(http, demo_store_server.admin_url("orders.json"), window)
    ids = order_ids(pages)
    assert [len(p.json()["orders"]) for p in pages] == [250, size - 250]
    assert len(set(ids)) == size == len(ids)
    assert len({o["created_at"] for p in pages for o in p.json()["orders"]}) == 1, "one created_at second too"
    back = http.get(PREVIOUS.search(pages[1].headers["link"]).group(1))
    assert [o["id"] for o in back.json()["orders"]] == ids[:250]


def test_page_info_carries_filters_and_refuses_new_ones(
    demo_store_server: ServedDemoStore, http: httpx.Client
) -> None:
    url = demo_store_server.admin_url("orders.json")
    first = http.get(url, params={"status": "cancelled", "limit": 5})
    next_url = NEXT.search(first.headers["link"]).group(1)
    assert next_url.startswith(demo_store_server.url + "/admin/api/2025-01/orders.json?limit=5&page_info=")
    page_info = next_url.split("page_info=")[1]
    cursor = orjson.loads(base64.urlsafe_b64decode(page_info + "=" * (-len(page_info) % 4)))
    assert cursor["direction"] == "next" and cursor["filters"]["status"] == "cancelled"
    second = http.get(next_url)
    assert all(o["cancelled_at"] for o in second.json()["orders"])
    refused = http.get(url, params={"page_info": page_info, "status": "any", "limit": 5})
    assert refused.status_code == 400
    assert refused.json()["errors"]["page_info"] == ["status cannot be passed when page_info is present"]
    garbage = http.get(url, params={"page_info": "not-a-cursor"})
    assert garbage.status_code == 400


def test_bad_parameters_are_400(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    url = demo_store_server.admin_url("orders.json")
    bad_time = http.get(url, params={"updated_at_min": "2025-02-30T00:00:00Z"})
    assert bad_time.status_code == 400 and "updated_at_min" in bad_time.json()["errors"]
    assert http.get(url, params={"limit": 251}).status_code == 400
    assert http.get(url, params={"status": "archived"}).status_code == 400
    count = demo_store_server.admin_url("orders/count.json")
    assert http.get(count, params={"created_at_max": "soon"}).status_code == 400


def test_ids_fields_and_single_order(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    url = demo_store_server.admin_url("orders.json")
    some = http.get(url, params={"status": "any", "limit": 3}).json()["orders"]
    wanted = [o["id"] for o in some if isinstance(o["id"], int)][:2]
    by_ids = http.get(url, params={"status": "any", "ids": ",".join(map(str, wanted)), "fields": "id,name"})
    assert sorted(o["id"] for o in by_ids.json()["orders"]) == sorted(wanted)
    assert all(set(o) == {"id", "name"} for o in by_ids.json()["orders"])
    one = http.get(demo_store_server.admin_url(f"orders/{wanted[0]}.json"))
    assert one.status_code == 200 and one.json()["order"]["id"] == wanted[0]
    missing = http.get(demo_store_server.admin_url("orders/123.json"))
    assert missing.status_code == 404 and missing.json() == {"errors": "Not Found"}


def test_401_without_a_valid_token(demo_store_server: ServedDemoStore) -> None:
    url = demo_store_server.admin_url("orders.json")
    expected = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    for headers in ({}, {"X-Shopify-Access-Token": "wrong"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401 and response.json() == expected


def test_leaky_bucket_throttles_with_retry_after(demo_clock: FrozenClock) -> None:
    store = DemoStore(clock=demo_clock, bucket_size=4, leak_rate=0.01)
    with serve(store) as url, httpx.Client(headers={"X-Shopify-Access-Token": "demo-token"}) as http:
        responses = [http.get(f"{url}/admin/api/2025-01/orders.json?limit=1") for _ in range(6)]
    limits = [r.headers["x-shopify-shop-api-call-limit"] for r in responses]
    assert limits == ["1/4", "2/4", "3/4", "4/4", "4/4", "4/4"]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429, 429]
    throttled = responses[-1]
    assert 0 < float(throttled.headers["retry-after"]) <= 100
    assert "Exceeded" in throttled.json()["errors"]
    assert store.stats()["throttled"] == 2


def test_client_credentials_grant_and_expiry(demo_clock: FrozenClock) -> None:
    store = DemoStore(clock=demo_clock, token_expires_in=60)
    with serve(store) as url:
        grant = {
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        }
        issued = httpx.post(f"{url}/admin/oauth/access_token", data=grant)
        assert issued.status_code == 200
        body = issued.json()
        assert body["scope"] == "read_orders,read_all_orders" and body["expires_in"] == 60
        headers = {"X-Shopify-Access-Token": body["access_token"]}
        list_url = f"{url}/admin/api/2025-01/orders.json?limit=1"
        assert httpx.get(list_url, headers=headers).status_code == 200
        demo_clock.advance(seconds=61)
        assert httpx.get(list_url, headers=headers).status_code == 401
        wrong = httpx.post(f"{url}/admin/oauth/access_token", data={**grant, "client_secret": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_cancel_endpoint(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    store = demo_store_server.store
    recent = store.orders(created_at_min=NOW - timedelta(hours=4))
    target = next(o for o in recent if o["fulfillment_status"] is None and isinstance(o["id"], int))
    fulfilled = next(o for o in recent if o["fulfillment_status"] == "fulfilled" and isinstance(o["id"], int))
    cancel = demo_store_server.admin_url("orders/{}/cancel.json")
    demo_store_server.clock.advance(seconds=30)
    done = http.post(cancel.format(target["id"]), json={"reason": "customer"})
    assert done.status_code == 200
    order = done.json()["order"]
    assert order["cancel_reason"] == "customer" and order["cancelled_at"] == order["updated_at"]
    assert http.post(cancel.format(target["id"])).status_code == 422
    assert "errors" in http.post(cancel.format(fulfilled["id"])).json()
    assert http.post(cancel.format(1)).status_code == 404
    listed = http.get(
        demo_store_server.admin_url("orders.json"),
        params={"status": "cancelled", "updated_at_min": order["updated_at"]},
    )
    assert target["id"] in [o["id"] for o in listed.json()["orders"]]


def test_scripted_faults_and_stats(demo_store_server: ServedDemoStore, http: httpx.Client) -> None:
    store = demo_store_server.store
    url = demo_store_server.admin_url("orders.json")
    first = http.get(url, params={"status": "any", "limit": 10})
    next_url = NEXT.search(first.headers["link"]).group(1)
    control = httpx.post(
        f"{demo_store_server.url}/_demo/faults",
        json={
            "fail_next": [{"status": 503, "page_info_only": True}, {"truncate": True, "page_info_only": True}]
        },
    )
    assert control.status_code == 200 and len(control.json()["fail_next"]) == 2
    assert http.get(url, params={"limit": 1}).status_code == 200, "the 503 waits for a page_info request"
    assert http.get(next_url).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(next_url)
    assert http.get(next_url).json() == http.get(next_url).json()
    store.fail_next({"status": 429, "retry_after": 1.5})
    throttled = http.get(next_url)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1.50"
    stats = httpx.get(f"{demo_store_server.url}/_demo/stats").json()
    assert stats == store.stats()
    assert stats["by_status"]["503"] == 1 and stats["throttled"] == 1 and stats["requests"] == 7


def test_random_errors_follow_the_rate(demo_clock: FrozenClock) -> None:
    store = DemoStore(clock=demo_clock, bucket_size=400, faults={"error_rate": 0.5})
    with serve(store) as url, httpx.Client(headers={"X-Shopify-Access-Token": "demo-token"}) as http:
        statuses = Counter(
            http.get(f"{url}/admin/api/2025-01/orders.json?limit=1").status_code for _ in range(60)
        )
        store.set_faults(error_rate=0.0, fail_next=[{"status": 500, "request_number": 62}])
        assert http.get(f"{url}/admin/api/2025-01/orders.json?limit=1").status_code == 200
        assert http.get(f"{url}/admin/api/2025-01/orders.json?limit=1").status_code == 500
    assert 10 < sum(statuses[s] for s in (500, 502, 503)) < 50 and statuses[200] > 10
