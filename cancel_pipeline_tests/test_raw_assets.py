"""Landing raw pages, and the raw assets against the demo store over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline import clock as pipeline_clock
from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG, READ_NEW, READ_TAG
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse import raw_pages
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.page_parsing import append_parsed
from cancel_pipeline.warehouse.raw_pages import PageSpool, land_pages

ASSET = "raw_canceled_order_pages"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_page(number: int, order_ids: list[int], body: bytes | None = None) -> OrderPage:
    return OrderPage(
        page_number=number,
        request_path="/admin/api/2026-07/orders.json?status=cancelled&limit=250",
        api_version="2026-07",
        fetched_at=utc("2026-03-02T03:00:00"),
        body=body if body is not None else orjson.dumps({"orders": [{"id": i} for i in order_ids]}),
        order_count=len(order_ids),
    )


STORE = "demo"


def land_window(
    con: duckdb.DuckDBPyConnection,
    key: str,
    start: str,
    end: str,
    pages: list[OrderPage],
    *,
    store: str = STORE,
    supersede: bool = True,
    requested: tuple[str, str] | None = None,
):
    requested_min, requested_max = (
        (utc(requested[0]), utc(requested[1]))
        if requested
        else (utc(start) - timedelta(minutes=10), utc(end))
    )
    return land_pages(
        con,
        asset=ASSET,
        partition_key=key,
        window_start=utc(start),
        window_end=utc(end),
        requested_min=requested_min,
        requested_max=requested_max,
        pages=pages,
        store=store,
        supersede=supersede,
    )


def rows(con: duckdb.DuckDBPyConnection, *, current_only: bool = True) -> list[tuple]:
    where = "where superseded_at is null" if current_only else ""
    return con.execute(
        "select asset, partition_key, window_start, window_end, page_number, body::varchar"
        f" from raw_order_page_bodies {where} order by page_seq"
    ).fetchall()


def test_landing_a_window_again_supersedes_its_pages_and_keeps_them(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [1, 2])])
        first = rows(con)
        result = land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [1, 3])])
        assert rows(con) == [(*first[0][:5], '{"orders":[{"id":1},{"id":3}]}')]
        assert rows(con, current_only=False) == [*first, *rows(con)]
        assert (result.pages, result.orders, result.superseded_pages) == (1, 2, 1)
        [(superseded_by, new_seq)] = con.execute(
            "select min(superseded_by), max(page_seq) from raw_order_pages"
        ).fetchall()
        assert superseded_by == new_seq
        # Every page's objects stay, so order_versions can be rebuilt from all of them.
        assert con.execute("select count(*) from raw_order_objects").fetchone()[0] == 4


def test_a_tick_adds_to_the_day_without_superseding(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [1])])
        result = land_window(
            con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [2])], supersede=False
        )
        assert result.superseded_pages == 0
        assert [r[5] for r in rows(con)] == ['{"orders":[{"id":1}]}', '{"orders":[{"id":2}]}']


def test_a_range_supersedes_the_windows_it_covers_and_nothing_else(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-01", "2026-03-01", "2026-03-02", [make_page(1, [1])])
        land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [2])])
        land_window(con, "2026-03-03", "2026-03-03", "2026-03-04", [make_page(1, [3])])
        land_window(con, "2026-03-01...2026-03-02", "2026-03-01", "2026-03-03", [make_page(1, [1, 2])])
        assert [(r[1], r[5]) for r in rows(con)] == [
            ("2026-03-03", '{"orders":[{"id":3}]}'),
            ("2026-03-01...2026-03-02", '{"orders":[{"id":1},{"id":2}]}'),
        ]
        assert len(rows(con, current_only=False)) == 4


def test_coverage_is_how_far_the_current_pages_of_each_day_reach(tmp_path: Path) -> None:
    days = {
        "2026-03-01": (utc("2026-03-01"), utc("2026-03-02")),
        "2026-03-02": (utc("2026-03-02"), utc("2026-03-03")),
        "2026-03-03": (utc("2026-03-03"), utc("2026-03-04")),
    }
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        assert raw_pages.landed_coverage(con, ASSET, days) == dict.fromkeys(days)
        # A range run that stopped at "now", 2026-03-02 09:00, then a tick of that day.
        land_window(
            con,
            "2026-03-01...2026-03-02",
            "2026-03-01",
            "2026-03-03",
            [make_page(1, [1])],
            requested=("2026-02-28T23:50", "2026-03-02T09:00"),
        )
        land_window(
            con,
            "2026-03-02",
            "2026-03-02",
            "2026-03-03",
            [make_page(1, [2])],
            supersede=False,
            requested=("2026-03-02T08:50", "2026-03-02T09:30"),
        )
        assert raw_pages.landed_coverage(con, ASSET, days) == {
            "2026-03-01": utc("2026-03-02"),
            "2026-03-02": utc("2026-03-02T09:30"),
            "2026-03-03": None,
        }
        # Another asset's pages say nothing about this one.
        assert raw_pages.landed_coverage(con, "raw_updated_order_pages", days) == dict.fromkeys(days)


def test_a_failure_mid_write_leaves_the_previous_contents(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.duckdb"
    with warehouse_connection(path) as con:
        land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [1])])
        before = rows(con)

        # The failure comes after the old page was deleted and the new rows were written, before COMMIT.
        def append_then_fail(*args, **kwargs):
            append_parsed(*args, **kwargs)
            raise OSError("disk full")

        monkeypatch.setattr(raw_pages, "append_parsed", append_then_fail)
        with pytest.raises(OSError, match="disk full"):
            land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [7])])
        assert rows(con) == before
        # A page that is not JSON fails the landing before anything is written.
        monkeypatch.undo()
        with pytest.raises(duckdb.Error):
            land_window(
                con,
                "2026-03-02",
                "2026-03-02",
                "2026-03-03",
                [make_page(1, [7]), make_page(2, [8], body=b'{"orders": [{"id": 8}')],
            )
        assert rows(con) == before
    # And so it is on disk: the failed transaction never reached the file.
    with warehouse_connection(path) as con:
        assert rows(con) == before


def test_refresh_pages_land_without_a_window(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", [make_page(1, [1])])
        for _ in range(2):
            land_pages(
                con,
                asset="refresh",
                partition_key="run-1234",
                window_start=None,
                window_end=None,
                requested_min=None,
                requested_max=None,
                pages=[make_page(1, [1]), make_page(2, [5])],
                store=STORE,
            )
        landed = con.execute(
            "select asset, partition_key, window_start, page_number, superseded_at is not null"
            " from raw_order_pages order by page_seq"
        ).fetchall()
        assert landed == [
            (ASSET, "2026-03-02", utc("2026-03-02T00:00"), 1, False),
            ("refresh", "run-1234", None, 1, True),
            ("refresh", "run-1234", None, 2, True),
            ("refresh", "run-1234", None, 1, False),
            ("refresh", "run-1234", None, 2, False),
        ]


def test_pages_land_verbatim_and_a_spool_gives_them_back(tmp_path: Path) -> None:
    pretty = b'{"orders": [\n  {"id": 1}\n]}'
    compact = b'{"orders":  [{"id": 2, "note": "a\\nb"}]}'
    spool = PageSpool(tmp_path).extend([make_page(1, [1], body=pretty), make_page(2, [2], body=compact)])
    assert [page.page_number for page in spool.spooled] == [1, 2]
    assert list(spool.bodies()) == [pretty, compact]
    assert (spool.pages, spool.orders) == (2, 2)
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        land_window(con, "2026-03-02", "2026-03-02", "2026-03-03", spool)
        [(body,)] = con.execute(
            "select body::varchar from raw_order_page_bodies where page_number = 2"
        ).fetchall()
    assert body.encode() == compact  # verbatim, spaces and all


def test_connection_uses_utc_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "w.duckdb"
    with warehouse_connection(path) as con:
        [(zone,)] = con.execute("select current_setting('TimeZone')").fetchall()
    assert zone == "UTC"
    assert path.exists()


# --- The raw assets against the demo store over HTTP -------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock("2026-03-03T03:00:00Z")


@pytest.fixture
def store(clock: FrozenClock) -> DemoStore:
    return DemoStore(clock=clock, bucket_size=400, leak_rate=20.0)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def resources(store: DemoStore, tmp_path: Path) -> Iterator[dict[str, object]]:
    with serve(store) as base_url:
        yield {
            "shopify": ShopifyResource(
                store=base_url, access_token="demo-token", bucket_size=400, leak_rate=20.0, api="rest"
            ),
            "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        }


def landed_rows(resources: dict[str, object], *, current_only: bool = True) -> list[tuple]:
    warehouse = resources["duckdb"]
    assert isinstance(warehouse, WarehouseResource)
    where = "where superseded_at is null" if current_only else ""
    with warehouse.get_connection() as con:
        return con.execute(
            "select asset, partition_key, window_start, window_end, requested_min, requested_max, page_number,"
            " api_version, request_path, order_count, body::varchar"
            f" from raw_order_page_bodies {where} order by page_seq"
        ).fetchall()


def landed_order_ids(resources: dict[str, object], partition_key: str) -> set[int]:
    warehouse = resources["duckdb"]
    assert isinstance(warehouse, WarehouseResource)
    with warehouse.get_connection() as con:
        found = con.execute(
            "select distinct unnest(from_json(body->'$.orders[*].id', '[\"BIGINT\"]'))"
            " from raw_order_page_bodies where partition_key = ? and superseded_at is null",
            [partition_key],
        ).fetchall()
    return {order_id for (order_id,) in found}


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    first = result.get_asset_materialization_events()[0]
    return {key: value.value for key, value in first.materialization.metadata.items()}


@pytest.mark.timeout(60)
def test_one_day_materialized_twice_is_read_whole_and_supersedes_the_first_read(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    def run() -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [raw_updated_order_pages], resources=resources, partition_key="2026-03-02", instance=instance
        )
        assert result.success
        return result

    run()
    first_rows = landed_rows(resources)
    second_result = run()
    rows = landed_rows(resources)
    assert rows == first_rows
    assert rows and sum(row[9] for row in rows) > 0
    assert {row[:2] for row in rows} == {("raw_updated_order_pages", "2026-03-02")}
    assert rows[0][4:6] == (utc("2026-03-01T23:50"), utc("2026-03-03T00:00"))
    assert "token" not in " ".join(row[8] for row in rows).lower()
    assert len(landed_rows(resources, current_only=False)) == 2 * len(rows)
    metadata = materialization_metadata(second_result)
    assert metadata["pages"] == len(rows) == metadata["dagster/row_count"]
    assert metadata["orders"] == sum(row[9] for row in rows)
    assert (metadata["read"], metadata["superseded_pages"]) == ("whole", len(rows))
    assert metadata["requests"] >= 1 and metadata["retries"] == 0
    assert metadata["requested_min"] == "2026-03-01T23:50:00+00:00"
    assert metadata["requested_max"] == "2026-03-03T00:00:00+00:00"
    assert "rate_limit_wait_s" in metadata


@pytest.mark.timeout(120)
def test_a_two_day_range_is_one_run_with_a_materialization_per_day(
    resources: dict[str, object], store: DemoStore, instance: dg.DagsterInstance
) -> None:
    @dg.asset(deps=[raw_canceled_order_pages])
    def downstream_table() -> None:
        """Stands for the unpartitioned derived tables that follow the raw assets in a range run."""

    store.reset_counters()
    result = dg.materialize(
        [raw_canceled_order_pages, downstream_table],
        resources=resources,
        tags={RANGE_START_TAG: "2026-03-01", RANGE_END_TAG: "2026-03-02"},
        instance=instance,
    )
    assert result.success
    days = [
        event.partition
        for event in result.get_asset_materialization_events()
        if event.asset_key == raw_canceled_order_pages.key
    ]
    assert days == ["2026-03-01", "2026-03-02"]
    # One query for the whole range: a handful of requests, not one per day.
    assert store.stats()["admin_requests"] <= 5
    rows = landed_rows(resources)
    assert {row[1:6] for row in rows} == {
        (
            "2026-03-01...2026-03-02",
            utc("2026-03-01T00:00"),
            utc("2026-03-03T00:00"),
            utc("2026-02-28T23:50"),
            utc("2026-03-03T00:00"),
        )
    }
    assert sum(row[9] for row in rows) > 0


@pytest.mark.timeout(60)
def test_ticks_read_what_is_new_in_the_day_and_the_overlap_catches_a_late_order(
    resources: dict[str, object],
    clock: FrozenClock,
    store: DemoStore,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(now: str, tags: dict[str, str]) -> dict[str, object]:
        monkeypatch.setattr(pipeline_clock, "utc_now", lambda: utc(now))
        result = dg.materialize(
            [raw_canceled_order_pages],
            resources=resources,
            partition_key="2026-03-02",
            instance=instance,
            tags=tags,
        )
        assert result.success
        return materialization_metadata(result)

    tick = {READ_TAG: READ_NEW}
    clock.set("2026-03-02T10:05:00Z")
    first = run("2026-03-02T10:05", tick)
    # The first tick of the day reads it from its start, less the overlap, to now.
    assert (first["requested_min"], first["requested_max"]) == (
        "2026-03-01T23:50:00+00:00",
        "2026-03-02T10:05:00+00:00",
    )
    # An order canceled at 09:59 shows up only now, after the tick that covered 09:59 (indexing lag).
    clock.set("2026-03-02T09:59:00Z")
    late = store.create_order()
    store.cancel_order(late["id"], "inventory")
    clock.set("2026-03-02T10:35:00Z")
    second = run("2026-03-02T10:35", tick)
    # The next tick goes on from where the day's pages stop, less the overlap: it finds the late order.
    assert (second["requested_min"], second["requested_max"]) == (
        "2026-03-02T09:55:00+00:00",
        "2026-03-02T10:35:00+00:00",
    )
    assert (second["read"], second["superseded_pages"]) == ("new", 0)
    assert late["id"] in landed_order_ids(resources, "2026-03-02")
    ticks = landed_rows(resources)
    assert len(ticks) == first["pages"] + second["pages"]
    # A run without the tag (the UI, a backfill, the reconciliation) re-reads the day whole.
    whole = run("2026-03-02T11:00", {})
    assert whole["requested_min"] == "2026-03-01T23:50:00+00:00"
    assert whole["superseded_pages"] == len(ticks)
    assert len(landed_rows(resources)) == whole["pages"]
    assert late["id"] in landed_order_ids(resources, "2026-03-02")
