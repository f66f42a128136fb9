"""Shopify's search syntax for the `query` argument of `orders` and `ordersCount`, as an order filter.

Supported: `updated_at`, `created_at`, `processed_at` (same as created here) and `id` with `:`, `:>`, `:>=`,
`:<`, `:<=`; `status:open|closed|cancelled|any`; values bare or in single or double quotes; terms joined by
`AND` or by nothing (AND is implied). Anything else (OR, NOT, `-term`, other fields, bad values) is refused
with a message naming the term: a simulator that ignored a filter would hide a client's mistake.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from .query import STATUSES, OrderFilter

TERM = re.compile(
    r"""\s*(?:
        (?P<word>AND|OR|NOT)(?=\s|$)
      | (?P<neg>-)?(?P<field>[A-Za-z_]+):(?P<op>>=|<=|>|<)?
        (?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\s'"]+))
    )""",
    re.VERBOSE,
)
TIME_FIELDS = {"updated_at": "updated", "created_at": "created", "processed_at": "created"}
STRICT_BEFORE_VERSION = "2027-01"
"""From this API version `:<'T'` means strictly before T; earlier ones also matched orders later in second T."""


class SearchError(ValueError):
    """A search query the store refuses; the message names the offending term."""


@dataclass(frozen=True)
class OrderSearch:
    """A parsed search: the REST-style filter plus an id range (inclusive bounds)."""

    filters: OrderFilter
    id_min: int | None = None
    id_max: int | None = None

    def admits_id(self, order_id: int) -> bool:
        """Whether the id range lets this order through."""
        return (self.id_min is None or order_id >= self.id_min) and (
            self.id_max is None or order_id <= self.id_max
        )


def parse_search(text: str | None, shop_tz: tzinfo, version: str) -> OrderSearch:
    """Parse a search query; no status term means every status (GraphQL's `orders`, unlike REST)."""
    search = OrderSearch(OrderFilter(status="any"))
    if not text or not text.strip():
        return search
    position = 0
    status_seen = False
    while position < len(text):
        if not text[position:].strip():
            break
        match = TERM.match(text, position)
        if match is None:
            fragment = text[position:].strip().split()[0]
            raise SearchError(f"Invalid search query near {fragment!r}: expected field:value")
        position = match.end()
        word = match.group("word")
        if word == "AND":
            continue
        if word is not None or match.group("neg"):
            raise SearchError(f"Unsupported search syntax {match.group(0).strip()!r}: only AND is supported")
        field = match.group("field")
        op = match.group("op") or ""
        bare = match.group("bare")
        value = next(v for v in (match.group("single"), match.group("double"), bare) if v is not None)
        if field == "status":
            if op or value not in STATUSES:
                raise SearchError(
                    f"Invalid status in {match.group(0).strip()!r}: use one of {', '.join(STATUSES)}"
                )
            if status_seen:
                raise SearchError("Only one status term is supported")
            status_seen = True
            search = replace(search, filters=replace(search.filters, status=value))
        elif field in TIME_FIELDS:
            search = _time_term(search, TIME_FIELDS[field], op, value, bare is not None, shop_tz, version)
        elif field == "id":
            search = _id_term(search, op, value)
        else:
            raise SearchError(f"Unsupported search field {field!r} in {match.group(0).strip()!r}")
    return search


def _time_term(
    search: OrderSearch, field: str, op: str, value: str, bare: bool, shop_tz: tzinfo, version: str
) -> OrderSearch:
    if bare and "T" in value:
        # Shopify drops the time of an unquoted date-time ("date values must be a string surrounded by quotes").
        value = value.split("T", 1)[0]
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T") if len(value) > 10 else value)
    except ValueError:
        raise SearchError(f"Invalid date {value!r} for {field}_at") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=shop_tz)
    t = moment.timestamp()
    f = search.filters
    lo, hi = getattr(f, f"{field}_min"), getattr(f, f"{field}_max")
    # Stored times are whole seconds, so each comparison becomes an inclusive bound on whole seconds.
    if op == ">=":
        lo = _tighter_min(lo, math.ceil(t))
    elif op == ">":
        lo = _tighter_min(lo, math.floor(t) + 1)
    elif op == "<=":
        hi = _tighter_max(hi, math.floor(t))
    elif op == "<":
        strict = version == "unstable" or version >= STRICT_BEFORE_VERSION
        hi = _tighter_max(hi, math.ceil(t) - 1 if strict else math.floor(t))
    else:
        # `field:T` is the whole second (or day, for a bare date) it names.
        span = 86400 if len(value) <= 10 else 1
        lo, hi = _tighter_min(lo, math.floor(t)), _tighter_max(hi, math.floor(t) + span - 1)
    return replace(search, filters=replace(f, **{f"{field}_min": lo, f"{field}_max": hi}))


def _id_term(search: OrderSearch, op: str, value: str) -> OrderSearch:
    raw = value.rsplit("/", 1)[-1] if value.startswith("gid://") else value
    try:
        number = int(raw)
    except ValueError:
        raise SearchError(f"Invalid id {value!r}: expected a number") from None
    lo, hi = search.id_min, search.id_max
    if op == "":
        # An exact id is a lookup, not a scan.
        search = replace(search, filters=replace(search.filters, ids=(number,)))
    if op in ("", ">="):
        lo = _tighter_min(lo, number)
    if op in ("", "<="):
        hi = _tighter_max(hi, number)
    if op == ">":
        lo = _tighter_min(lo, number + 1)
    if op == "<":
        hi = _tighter_max(hi, number - 1)
    return replace(search, id_min=lo, id_max=hi)


def _tighter_min(current: float | None, new: float) -> float:
    return new if current is None else max(current, new)


def _tighter_max(current: float | None, new: float) -> float:
    return new if current is None else min(current, new)
