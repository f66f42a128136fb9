"""Settings of the demo store: what history it generates and how it serves it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

GRAPHQL_PLANS = {
    "standard": (2000, 100.0),
    "advanced": (4000, 200.0),
    "plus": (20000, 1000.0),
    "enterprise": (40000, 2000.0),
}
"""(bucket points, restore points per second) per plan. The rates are Shopify's published ones
(shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits); Shopify publishes no current bucket sizes, so
each is a guess of 20 seconds of restore (2000 for Standard, the size most often reported)."""

HISTORY_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Hour buckets are counted from here, so any time range can be generated without the ones before it."""


@dataclass(frozen=True)
class DemoStoreSettings:
    """Everything that shapes the demo store. The defaults are demo values, not secrets."""

    seed: int = 7
    orders_per_hour: float = 15.0
    shop_timezone: str = "America/New_York"
    shop_domain: str = "cancel-pipeline-demo.myshopify.com"
    currency: str = "USD"
    # Only orders created in the last `history_days` are served, as a store without read_all_orders sees them.
    history_days: int = 60
    # A burst: `burst_size` orders created in one second and bulk-fulfilled (and tagged) in one later second.
    burst_size: int = 300
    burst_every_hours: int = 12
    # One malformed record every `malformed_every_hours` hours, cycling through the kinds in malformed.py.
    malformed_every_hours: int = 4
    access_token: str = "demo-token"
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    token_expires_in: int = 86399
    # Leaky bucket per token: Standard plan 40 / 2 per s; Plus 400 / 20 per s.
    bucket_size: int = 40
    leak_rate: float = 2.0
    bucket_cache_size: int = 4096
    # GraphQL cost bucket, per app (one app per store here): see GRAPHQL_PLANS.
    graphql_bucket_size: int = GRAPHQL_PLANS["standard"][0]
    graphql_restore_rate: float = GRAPHQL_PLANS["standard"][1]
    # HTTP status of a THROTTLED answer: 200 as Shopify's CLI issue reports, 429 as one forum reply says.
    graphql_throttled_status: int = 200
    # Bulk query latency model. Shopify publishes no figures; these are guesses: a few seconds queued before
    # RUNNING, then about 2,000 objects a second.
    bulk_start_delay: float = 3.0
    bulk_seconds_per_1000: float = 0.5
    bulk_cancel_delay: float = 1.0
    # Bulk queries running at once per app; None follows the API version (1 before 2026-01, 5 from it).
    bulk_max_running: int | None = None
