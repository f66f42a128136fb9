"""Settings of the demo store: what history it generates and how it serves it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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
