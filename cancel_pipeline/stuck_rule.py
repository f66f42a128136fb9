"""The "stuck in created" rule's thresholds: how long an order may stay in 'created', per `source_name`."""

from collections.abc import Mapping
from datetime import timedelta

OTHER_SOURCES = "other"
"""The key of `stuck_thresholds` that applies to every source not named."""
DEFAULT_OTHER_THRESHOLD = timedelta(hours=24)
# POS orders are normally completed at the till, so a short wait already means something is wrong.
DEFAULT_STUCK_THRESHOLDS: Mapping[str, timedelta] = {
    "pos": timedelta(hours=1),
    "web": timedelta(hours=24),
    "shopify_draft_order": timedelta(hours=48),
    OTHER_SOURCES: DEFAULT_OTHER_THRESHOLD,
}
