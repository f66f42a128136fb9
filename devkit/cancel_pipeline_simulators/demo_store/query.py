"""Order list filters as Shopify takes them, and the page_info cursor that carries them between pages."""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson

STATUSES = ("open", "closed", "cancelled", "any")
MAX_LIMIT = 250
DEFAULT_LIMIT = 50


class BadRequest(Exception):
    """A request Shopify would answer with 400; `errors` is the body's "errors" value."""

    def __init__(self, errors: Any) -> None:
        super().__init__(str(errors))
        self.errors = errors


@dataclass(frozen=True)
class OrderFilter:
    """The filters of orders.json and orders/count.json; times are UTC epoch seconds, bounds inclusive."""

    status: str = "open"
    updated_min: float | None = None
    updated_max: float | None = None
    created_min: float | None = None
    created_max: float | None = None
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the keyset (created_at, id) of its last (or, going back, first) order."""

    direction: str
    last_id: int
    last_value: int
    filters: OrderFilter


def parse_time(name: str, value: str, shop_tz: tzinfo) -> float:
    """An ISO 8601 filter value with any offset or Z (a value without one is in the shop's zone)."""
    text = value.strip()
    candidates = (text, text.replace(" ", "+"))  # an unescaped "+" in a query string arrives as a space
    for candidate in candidates:
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=shop_tz)
        return moment.timestamp()
    raise BadRequest({name: [f"{value!r} is not a valid ISO 8601 date-time"]})


def parse_filter(params: dict[str, str], shop_tz: tzinfo, *, allow_ids: bool = True) -> OrderFilter:
    """Build the filter from query parameters; raises BadRequest with Shopify-style errors."""
    status = params.get("status", "open") or "open"
    if status not in STATUSES:
        raise BadRequest({"status": [f"{status!r} is not one of {', '.join(STATUSES)}"]})
    times: dict[str, float | None] = {}
    for name in ("updated_at_min", "updated_at_max", "created_at_min", "created_at_max"):
        raw = params.get(name)
        times[name] = parse_time(name, raw, shop_tz) if raw else None
    ids = None
    if allow_ids and params.get("ids"):
        try:
            ids = tuple(int(part) for part in params["ids"].split(",") if part.strip())
        except ValueError:
            raise BadRequest({"ids": ["must be a comma-separated list of integers"]}) from None
    return OrderFilter(
        status=status,
        updated_min=times["updated_at_min"],
        updated_max=times["updated_at_max"],
        created_min=times["created_at_min"],
        created_max=times["created_at_max"],
        ids=ids,
    )


def parse_limit(raw: str | None) -> int:
    """The page size: default 50, at most 250 (a larger one is refused, as recent API versions do)."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest({"limit": ["must be an integer"]}) from None
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest({"limit": [f"must be between 1 and {MAX_LIMIT}"]})
    return limit


def encode_cursor(cursor: Cursor) -> str:
    """page_info as Shopify mints it: base64url JSON, padding stripped."""
    payload = {
        "direction": cursor.direction,
        "last_id": cursor.last_id,
        "last_value": datetime.fromtimestamp(cursor.last_value, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "filters": asdict(cursor.filters),
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode("ascii")


def decode_cursor(page_info: str) -> Cursor:
    """Read a page_info back; anything that is not one of ours is a 400."""
    try:
        raw = base64.urlsafe_b64decode(page_info + "=" * (-len(page_info) % 4))
        payload = orjson.loads(raw)
        filters = dict(payload["filters"])
        if filters.get("ids") is not None:
            filters["ids"] = tuple(int(i) for i in filters["ids"])
        last_value = datetime.strptime(payload["last_value"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        cursor = Cursor(
            direction=payload["direction"],
            last_id=int(payload["last_id"]),
            last_value=int(last_value.timestamp()),
            filters=OrderFilter(**filters),
        )
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise BadRequest({"page_info": ["Invalid value."]}) from None
    if cursor.direction not in ("next", "prev") or cursor.filters.status not in STATUSES:
        raise BadRequest({"page_info": ["Invalid value."]})
    return cursor
