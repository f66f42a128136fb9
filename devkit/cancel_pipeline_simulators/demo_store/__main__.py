"""Command line: `python -m cancel_pipeline_simulators.demo_store serve --port 8765`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from cancel_pipeline_simulators.http_server import serve_forever

from .clock import FrozenClock, system_clock
from .settings import GRAPHQL_PLANS, DemoStoreSettings
from .store import DemoStore


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until interrupted."""
    defaults = DemoStoreSettings()
    parser = argparse.ArgumentParser(prog="python -m cancel_pipeline_simulators.demo_store")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the demo store over HTTP until interrupted")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8765)
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--orders-per-hour", type=float, default=defaults.orders_per_hour)
    run.add_argument("--bucket-size", type=int, default=defaults.bucket_size)
    run.add_argument("--leak-rate", type=float, default=defaults.leak_rate)
    run.add_argument("--access-token", default=defaults.access_token)
    run.add_argument("--client-id", default=defaults.client_id)
    run.add_argument("--client-secret", default=defaults.client_secret)
    run.add_argument("--token-expires-in", type=int, default=defaults.token_expires_in)
    run.add_argument("--now", help="freeze the clock at this ISO 8601 time (with offset or Z)")
    run.add_argument("--error-rate", type=float, default=0.0)
    run.add_argument(
        "--graphql-plan",
        choices=sorted(GRAPHQL_PLANS),
        default="standard",
        help="GraphQL points bucket and restore rate of this Shopify plan",
    )
    run.add_argument("--graphql-throttled-status", type=int, choices=(200, 429), default=200)
    run.add_argument("--bulk-start-delay", type=float, default=defaults.bulk_start_delay)
    run.add_argument("--bulk-seconds-per-1000", type=float, default=defaults.bulk_seconds_per_1000)
    run.add_argument(
        "--bulk-max-running", type=int, default=None, help="bulk queries at once (default: by API version)"
    )
    args = parser.parse_args(argv)

    store = DemoStore(
        seed=args.seed,
        orders_per_hour=args.orders_per_hour,
        bucket_size=args.bucket_size,
        leak_rate=args.leak_rate,
        access_token=args.access_token,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_expires_in=args.token_expires_in,
        clock=FrozenClock(args.now) if args.now else system_clock,
        faults={"error_rate": args.error_rate},
        graphql_bucket_size=GRAPHQL_PLANS[args.graphql_plan][0],
        graphql_restore_rate=GRAPHQL_PLANS[args.graphql_plan][1],
        graphql_throttled_status=args.graphql_throttled_status,
        bulk_start_delay=args.bulk_start_delay,
        bulk_seconds_per_1000=args.bulk_seconds_per_1000,
        bulk_max_running=args.bulk_max_running,
    )
    print(f"demo store serving on http://{args.host}:{args.port} (seed {args.seed})", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(store, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
