"""The raw layer's page store: bodies as files beside the DuckDB file, objects parsed once at landing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.raw_pages import (
    INCOMING,
    PARSED,
    STALE_SPOOL_SECONDS,
    page_bodies,
    page_store_for,
    prune_superseded,
    spooled_pages,
    sweep_dead_spools,
)
from cancel_pipeline_tests.order_builders import line_item, order, utc
from cancel_pipeline_tests.test_raw_assets import land_window, make_page

WINDOW = ("2026-03-02", "2026-03-02", "2026-03-03")


def store_files(database: Path) -> set[str]:
    """Every page file in the store, relative to it (spool folders excluded)."""
    store = page_store_for(database)
    return {
        str(path.relative_to(store))
        for path in store.rglob("page-*.json")
        if INCOMING not in path.relative_to(store).parts
    }


def test_bodies_land_as_files_named_by_their_rows(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    bodies = [b'{"orders": [{"id": 1}]}', b'{"orders":[{"id":2},\n{"id":3}]}']
    with (
        spooled_pages(
            [make_page(1, [1], bodies[0]), make_page(2, [2, 3], bodies[1])], database=database
        ) as spool,
        warehouse_connection(database) as con,
    ):
        land_window(con, *WINDOW, spool)
        landed = con.execute(
            "select page_seq, body_file, body_bytes, order_count from raw_order_pages order by page_number"
        ).fetchall()
        objects = con.execute(
            "select page_seq, position, order_id from raw_order_objects order by all"
        ).fetchall()
        read_back = page_bodies(con, [seq for seq, *_ in landed])
        # The spool gave its files to the landing: nothing is left to copy or clean.
        assert list(spool.directory.glob("page-*.json")) == []
    assert store_files(database) == {body_file for _, body_file, _, _ in landed}
    assert all(body_file.startswith("raw_canceled_order_pages/") for _, body_file, _, _ in landed)
    for (page_seq, body_file, size, _), body in zip(landed, bodies, strict=True):
        assert (page_store_for(database) / body_file).read_bytes() == body
        assert size == len(body)
        assert read_back[page_seq] == body.decode()
    first, second = landed[0][0], landed[1][0]
    assert objects == [(first, 1, 1), (second, 1, 2), (second, 2, 3)]


def test_re_reading_a_window_keeps_the_files_of_the_pages_it_supersedes(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with warehouse_connection(database) as con:
        land_window(con, *WINDOW, [make_page(1, [1]), make_page(2, [2])])
        first_files = store_files(database)
        land_window(con, *WINDOW, [make_page(1, [1])])
        [(body_file,)] = con.execute(
            "select body_file from raw_order_pages where superseded_at is null"
        ).fetchall()
        assert con.execute("select count(*) from raw_order_objects").fetchone()[0] == 3
        bodies = page_bodies(
            con, [seq for (seq,) in con.execute("select page_seq from raw_order_pages").fetchall()]
        )
    assert len(first_files) == 2 and len(bodies) == 3
    assert store_files(database) == first_files | {body_file}


def test_retention_prunes_superseded_pages_older_than_its_limit_and_nothing_else(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with warehouse_connection(database) as con:
        land_window(con, *WINDOW, [make_page(1, [1]), make_page(2, [2])])
        land_window(con, *WINDOW, [make_page(1, [1])])
        land_window(con, "2026-03-03", "2026-03-03", "2026-03-04", [make_page(1, [3])])
        con.execute(
            "update raw_order_pages set superseded_at = now() - interval 10 days where superseded_at is not null"
        )
        current = con.execute(
            "select page_seq, body_file from raw_order_pages where superseded_at is null order by 1"
        ).fetchall()
        assert prune_superseded(con, superseded_before=utc(2026, 1, 1)) == 0
        assert prune_superseded(con, superseded_before=datetime.now(UTC) - timedelta(days=7)) == 2
        assert con.execute("select page_seq, body_file from raw_order_pages order by 1").fetchall() == current
        assert con.execute("select distinct page_seq from raw_order_objects order by 1").fetchall() == [
            (seq,) for seq, _ in current
        ]
    assert store_files(database) == {body_file for _, body_file in current}


def test_a_failed_landing_leaves_rows_files_and_spool_as_they_were(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with warehouse_connection(database) as con:
        land_window(con, *WINDOW, [make_page(1, [1])])
        before_rows = con.execute("select * from raw_order_pages").fetchall()
        before_files = store_files(database)
        pages = [make_page(1, [7]), make_page(2, [8], body=b'{"orders": [{"id": 8}')]
        with spooled_pages(pages, database=database, max_chunk_bytes=1) as spool:
            with pytest.raises(duckdb.Error):
                land_window(con, *WINDOW, spool)
            # The spool has its files back, so the same landing can be tried again.
            assert sorted(p.name for p in spool.directory.glob("page-*.json")) == [
                "page-000001.json",
                "page-000002.json",
            ]
        assert con.execute("select * from raw_order_pages").fetchall() == before_rows
        assert con.execute("select count(*) from raw_order_objects").fetchone()[0] == 1
    assert store_files(database) == before_files


def test_a_crash_leftover_is_swept_by_the_next_landing(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with warehouse_connection(database) as con:
        land_window(con, *WINDOW, [make_page(1, [1])])
    store = page_store_for(database)
    # A landing renamed its spool into the store, then the process died before COMMIT.
    orphan = store / "raw_canceled_order_pages" / "20260302T020000-deadbeef0000"
    orphan.mkdir()
    (orphan / "page-000001.json").write_bytes(b'{"orders": []}')
    # A spool of an older release (no lock file) killed two days ago, and one made an instant ago.
    stale = store / INCOMING / "fetch-stale"
    stale.mkdir(parents=True)
    old = time.time() - STALE_SPOOL_SECONDS - 3600
    os.utime(stale, (old, old))
    unlocked_new = store / INCOMING / "fetch-new"
    unlocked_new.mkdir()
    with warehouse_connection(database) as con:
        land_window(con, "2026-03-03", "2026-03-03", "2026-03-04", [make_page(1, [2])])
    assert not orphan.exists() and not stale.exists()
    assert unlocked_new.exists()
    assert len(store_files(database)) == 2


SPOOL_AND_DIE = """
import os, signal, sys
from datetime import UTC, datetime
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.warehouse.raw_pages import spooled_pages

def pages():
    for number in range(1, 4):
        yield OrderPage(number, "/orders.json", "2026-07", datetime.now(UTC), b'{"orders": [{"id": 1}]}', 1)
    # Killed mid-fetch: no finally block, no exit handler runs.
    os.kill(os.getpid(), signal.SIGKILL)

with spooled_pages(pages(), database=sys.argv[1]) as spool:
    pass
"""


def test_a_spool_left_by_a_killed_fetch_is_swept_by_the_next_fetch_at_once(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    killed = subprocess.run([sys.executable, "-c", SPOOL_AND_DIE, str(database)], check=False, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    incoming = page_store_for(database) / INCOMING
    [left] = list(incoming.iterdir())
    assert len(list(left.glob("page-*.json"))) == 3 and (left / PARSED).is_dir()
    # The next fetch, a moment later (not a day), sweeps it; its own spool lives while it runs.
    with spooled_pages([make_page(1, [1])], database=database) as spool:
        assert not left.exists()
        assert [path.name for path in incoming.iterdir()] == [spool.directory.name]
        # A live spool is never swept, not even by a sweep from the same process.
        assert sweep_dead_spools(incoming) == []
        assert spool.directory.exists()
    assert list(incoming.iterdir()) == []


def test_rejects_keep_their_object_verbatim_and_good_objects_are_typed(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    good = order(10, utc(2026, 3, 2, 1, 40), line_items=[line_item(101, 3, current_quantity=2)])
    broken = {"id": 11, "created_at": "yesterday", "updated_at": "2026-03-02T01:41:00Z", "line_items": []}
    not_an_object = 12
    body = orjson.dumps({"orders": [good, broken, not_an_object]})
    with warehouse_connection(database) as con:
        land_window(con, *WINDOW, [make_page(1, [10, 11, 12], body)])
        rows = con.execute(
            "select position, order_id, reason, detail, raw_order, updated_at, line_items"
            " from raw_order_objects order by position"
        ).fetchall()
    (
        (p1, id1, reason1, _, raw1, updated1, items1),
        (p2, _, reason2, detail2, raw2, *_),
        (p3, _, reason3, detail3, raw3, *_),
    ) = rows
    assert (p1, id1, reason1, raw1, updated1) == (1, 10, None, None, utc(2026, 3, 2, 1, 40))
    assert [(item["id"], item["quantity"], item["current_quantity"]) for item in items1] == [(101, 3, 2)]
    assert (p2, reason2, detail2) == (2, "created_at_unparseable", "created_at=yesterday")
    assert orjson.loads(raw2) == broken
    assert (p3, reason3, detail3, orjson.loads(raw3)) == (
        3,
        "id_not_integer",
        "id=missing (not an object)",
        12,
    )


def test_pages_parsed_while_fetching_land_the_same_rows_as_pages_parsed_at_landing(tmp_path: Path) -> None:
    pages = [
        make_page(
            number,
            [],
            orjson.dumps(
                {
                    "orders": [
                        order(100 * number + i, utc(2026, 3, 2, 1, 31 + i), line_items=[line_item(i, 2)])
                        for i in range(3)
                    ]
                    + [{"id": f"bad-{number}"}]
                }
            ),
        )
        for number in range(1, 8)
    ]
    objects = {}
    for name, in_background in (("background", True), ("at_landing", False)):
        database = tmp_path / f"{name}.duckdb"
        # Small chunks: the background parser hands out several, to both threads.
        with spooled_pages(
            pages, database=database if in_background else None, max_chunk_bytes=2_000, parse_threads=2
        ) as spool:
            assert (spool.parser is not None) == in_background
            with warehouse_connection(database) as con:
                land_window(con, *WINDOW, spool)
                objects[name] = con.execute(
                    "select p.page_number, o.* exclude (page_seq) from raw_order_objects o"
                    " join raw_order_pages p using (page_seq) order by all"
                ).fetchall()
    assert len(objects["background"]) == 28
    assert objects["background"] == objects["at_landing"]


def test_a_page_that_is_not_json_fails_its_landing_when_parsed_in_the_background(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    pages = [make_page(1, [1]), make_page(2, [2], body=b'{"orders": [{"id": 2}')]
    with (
        spooled_pages(pages, database=database, max_chunk_bytes=1, parse_threads=2) as spool,
        warehouse_connection(database) as con,
    ):
        with pytest.raises(duckdb.Error, match="JSON"):
            land_window(con, *WINDOW, spool)
        assert con.execute("select count(*) from raw_order_pages").fetchone()[0] == 0
