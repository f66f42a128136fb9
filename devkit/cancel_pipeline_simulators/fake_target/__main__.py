"""Command line: `python -m cancel_pipeline_simulators.fake_target serve --port 8766` serves the fake target.

Point a target at it with `"base_url": "http://127.0.0.1:8766"` and a `token_env` variable holding the
`--token` given here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from cancel_pipeline_simulators.fake_target import FakeTarget
from cancel_pipeline_simulators.http_server import serve_forever


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m cancel_pipeline_simulators.fake_target")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the fake Cancel Order API until interrupted")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8766)
    run.add_argument("--token", default="fake-target-token", help="the token the target accepts")
    run.add_argument("--error-rate", type=float, default=0.0, help="share of calls answered 500")
    run.add_argument("--delay", type=float, default=0.0, help="seconds before each successful answer")
    run.add_argument(
        "--unknown-order", type=int, action="append", default=[], help="an order id answered 404"
    )
    args = parser.parse_args(argv)

    target = FakeTarget(args.token, error_rate=args.error_rate)
    target.delay_s = args.delay
    target.unknown_orders.update(args.unknown_order)
    print(f"fake target serving on http://{args.host}:{args.port}", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(target, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
