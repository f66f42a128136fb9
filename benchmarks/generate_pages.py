"""Synthetic Shopify order pages for the transform benchmark, rendered by the demo store.

Orders come from the demo store's seeded history (default settings: its mix of regular orders, bulk-fulfilled
bursts, cancellations, partial cancellations, edits, refunds and the odd malformed record), each rendered in
its final state exactly as `GET orders.json` would send it. They are written as newline-delimited files of
page bodies (`{"orders": [...]}`, 250 orders a line), `PAGES_PER_FILE` pages a file, so a benchmark of N
orders reads the first N / (250 * PAGES_PER_FILE) files. Files are generated once and reused while their
manifest (seed, page size, file size) matches.

    python benchmarks/generate_pages.py --orders 1m [--out-dir benchmarks/out/pages]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from cancel_pipeline_simulators.demo_store.history import History
from cancel_pipeline_simulators.demo_store.plan import MAX_LIFETIME
from cancel_pipeline_simulators.demo_store.render import OrderRenderer
from cancel_pipeline_simulators.demo_store.settings import DemoStoreSettings
from cancel_pipeline_simulators.demo_store.state import state_at

PAGE_ORDERS = 250
PAGES_PER_FILE = 40
FILE_ORDERS = PAGE_ORDERS * PAGES_PER_FILE
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "out" / "pages"
SEED = 7
_MANIFEST = "manifest.json"


def parse_count(text: str) -> int:
    """`10k`, `100k`, `1m` or a plain integer, as a number of orders."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def rendered_orders(seed: int = SEED) -> Iterator[bytes]:
    """The demo store's orders, oldest first, each as the JSON bytes of its final state."""
    settings = DemoStoreSettings(seed=seed)
    history = History(settings)
    renderer = OrderRenderer(settings.shop_timezone, settings.shop_domain, settings.currency)
    bucket = 0
    while True:
        for plan in history.bucket(bucket):
            state = state_at(plan, plan.created + MAX_LIFETIME + 1)
            if state is not None:
                yield orjson.dumps(renderer.render(plan, state))
        history.bucket.cache_clear()
        bucket += 1


def page_files(out_dir: Path, orders: int) -> list[Path]:
    """The files holding the first `orders` orders (a multiple of one file's orders)."""
    if orders % FILE_ORDERS:
        raise ValueError(f"orders must be a multiple of {FILE_ORDERS}")
    return [out_dir / f"pages-{index:05d}.jsonl" for index in range(orders // FILE_ORDERS)]


def ensure_pages(orders: int, out_dir: Path = DEFAULT_OUT_DIR) -> list[Path]:
    """Generate page files until at least `orders` orders exist; returns the files holding the first `orders`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {"seed": SEED, "page_orders": PAGE_ORDERS, "pages_per_file": PAGES_PER_FILE}
    manifest_path = out_dir / _MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    have = manifest.get("orders", 0) if all(manifest.get(k) == v for k, v in wanted.items()) else 0
    files = page_files(out_dir, orders)
    if have < orders:
        _write_files(files, out_dir)
        manifest_path.write_text(json.dumps({**wanted, "orders": orders}))
    return files


def _write_files(files: list[Path], out_dir: Path) -> None:
    stream = rendered_orders()
    total_bytes = 0
    started = time.perf_counter()
    for path in files:
        with path.open("wb") as out:
            for _ in range(PAGES_PER_FILE):
                body = b'{"orders":[' + b",".join(next(stream) for _ in range(PAGE_ORDERS)) + b"]}"
                total_bytes += len(body)
                out.write(body + b"\n")
    seconds = time.perf_counter() - started
    count = len(files) * FILE_ORDERS
    print(
        f"generated {count:,} orders ({total_bytes / count:,.0f} bytes an order) in {out_dir.name}/ "
        f"in {seconds:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", default="1m", help="how many orders, e.g. 100k or 1m")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    files = ensure_pages(parse_count(args.orders), args.out_dir)
    print(f"{len(files)} files of {FILE_ORDERS:,} orders in {args.out_dir}")


if __name__ == "__main__":
    main()
