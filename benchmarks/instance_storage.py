"""Per-partition bookkeeping on Dagster's stock SQLite storage and on PostgreSQL.

Dagster records one materialization event per partition, whatever the run does: a range run over N windows
writes N events to the instance's event log and updates the asset's partition status. This measures that
cost alone, with a trivial hourly-partitioned asset (no Shopify, no DuckDB), materialized in one run over
each range size of `--sizes`, on a fresh instance of each storage: `sqlite` (Dagster's default, as in
deploy/local/), `postgres` (deploy/postgres/dagster.yaml's storage, on a throwaway local cluster behind
PgBouncer, as deployed, started for the measurement) and `postgres-direct` (the same cluster, no PgBouncer). For each run: the wall time of the run, and the time to read every materialization
back (what the UI's partition status needs). The per-partition figure is the slope between the smallest and
the largest range.

    python benchmarks/instance_storage.py [--sizes 24,240,2400] [--storages sqlite,postgres,postgres-direct] [--repeat 2]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
from tabulate import tabulate

STORAGES = ("sqlite", "postgres", "postgres-direct")
HOURLY = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dg.asset(partitions_def=HOURLY, backfill_policy=dg.BackfillPolicy.single_run())
def bookkeeping_probe(context: dg.AssetExecutionContext) -> None:
    """Does nothing: the run's cost is Dagster's bookkeeping for its partitions."""
    context.log.debug(f"{len(context.partition_keys)} partitions")


@contextmanager
def instance_on(storage: str) -> Iterator[dg.DagsterInstance]:
    """A fresh instance on `storage`, deleted (with its cluster) afterwards."""
    with tempfile.TemporaryDirectory() as home:
        if storage == "sqlite":
            Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            yield dg.DagsterInstance.from_config(home)
            return
        from cancel_pipeline_testkit.pgbouncer import run_pgbouncer
        from cancel_pipeline_testkit.postgres import run_postgres_cluster

        with run_postgres_cluster() as cluster, ExitStack() as stack:
            Path(home, "dagster.yaml").write_text(
                (PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml").read_text()
            )
            url = (
                cluster.url
                if storage == "postgres-direct"
                else stack.enter_context(run_pgbouncer(cluster)).url
            )
            os.environ["DAGSTER_POSTGRES_URL"] = url
            try:
                instance = dg.DagsterInstance.from_config(home)
                try:
                    yield instance
                finally:
                    instance.dispose()
            finally:
                del os.environ["DAGSTER_POSTGRES_URL"]


def measure(instance: dg.DagsterInstance, first: int, size: int) -> tuple[float, float]:
    """Materialize partitions [first, first+size) in one run; (run seconds, read-back seconds)."""
    keys = HOURLY.get_partition_keys()[first : first + size]
    started = time.perf_counter()
    result = dg.materialize(
        [bookkeeping_probe],
        instance=instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    run_seconds = time.perf_counter() - started
    assert result.success
    started = time.perf_counter()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=bookkeeping_probe.key, asset_partitions=keys), limit=size + 1
    ).records
    read_seconds = time.perf_counter() - started
    assert len(records) == size, (len(records), size)
    return run_seconds, read_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="24,240,2400")
    parser.add_argument("--storages", default="sqlite,postgres,postgres-direct")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    storages = args.storages.split(",")
    if any(storage not in STORAGES for storage in storages):
        parser.error(f"--storages takes a comma-separated list of {', '.join(STORAGES)}")
    rows = []
    for storage in storages:
        with instance_on(storage) as instance:
            measure(instance, 0, 1)  # warm-up: imports, schema, first connection
            first = 1
            timings: dict[int, tuple[float, float]] = {}
            for size in sizes:
                runs = []
                for _ in range(args.repeat):
                    runs.append(measure(instance, first, size))
                    first += size
                timings[size] = (
                    statistics.median(run for run, _ in runs),
                    statistics.median(read for _, read in runs),
                )
                rows.append([storage, size, f"{timings[size][0]:.2f}", f"{timings[size][1] * 1000:.0f}"])
            slope = (timings[sizes[-1]][0] - timings[sizes[0]][0]) / (sizes[-1] - sizes[0])
            rows.append([storage, "per partition", f"{slope * 1000:.2f} ms", ""])
    print(tabulate(rows, headers=["storage", "partitions in the run", "run s", "read back ms"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
