"""Rendering an order's state as Shopify's REST order JSON (money as decimal strings, shop-offset times)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from .catalog import CITIES, LOCATION_ID, PRODUCTS, STREETS
from .malformed import break_order
from .plan import OrderPlan, child_id
from .state import OrderState

TAX_RATE_PERCENT = 8
APP_IDS = {"web": 580111, "pos": 129785, "shopify_draft_order": 1354745}
GATEWAYS = {"web": "shopify_payments", "pos": "cash", "shopify_draft_order": "manual"}
REFUND_ID_BASE = 9_120_000_000_000
REFUND_LINE_ID_BASE = 3_050_000_000_000
TRANSACTION_ID_BASE = 6_710_000_000_000
FULFILLMENT_ID_BASE = 4_990_000_000_000


@lru_cache(maxsize=65536)  # prices, taxes and totals repeat across orders; formatting is a hot spot
def money(cents: int) -> str:
    """Cents as Shopify's decimal string, e.g. 2500 -> "25.00"."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def tax_cents(cents: int) -> int:
    """Sales tax on an amount, rounded half up to the cent."""
    return (cents * TAX_RATE_PERCENT + 50) // 100


def _money_set(amount: str, currency: str) -> dict[str, Any]:
    return {
        "shop_money": {"amount": amount, "currency_code": currency},
        "presentment_money": {"amount": amount, "currency_code": currency},
    }


class OrderRenderer:
    """Renders order states for one shop (its time zone, domain and currency)."""

    def __init__(self, shop_timezone: str, shop_domain: str, currency: str) -> None:
        self.currency = currency
        self.shop_domain = shop_domain
        tz = ZoneInfo(shop_timezone)
        # Many orders share timestamps (bursts, repeated pages), so formatting is cached.
        self.timestamp = lru_cache(maxsize=65536)(lambda ts: datetime.fromtimestamp(ts, tz).isoformat())
        # A line item's product fields are the same in every order: built once per product (read only).
        self._product_fields: dict[int, dict[str, Any]] = {}

    def render(self, plan: OrderPlan, st: OrderState) -> dict[str, Any]:
        """The order as GET orders/{id}.json returns it (inside "order"), malformations applied."""
        ts = self.timestamp
        cur = self.currency
        oid = plan.id
        created = ts(plan.created)
        lines = []
        subtotal = current_subtotal = weight = 0
        for i, line in enumerate(plan.lines):
            product = PRODUCTS[line.product]
            line_total = product.price_cents * line.quantity
            subtotal += line_total
            current_subtotal += product.price_cents * st.current[i]
            weight += product.grams * st.current[i]
            fulfillable = max(st.current[i] - st.fulfilled[i], 0)
            line_status = None if st.fulfilled[i] == 0 else "partial" if fulfillable else "fulfilled"
            product_fields = self._product_fields.get(line.product)
            if product_fields is None:
                price = money(product.price_cents)
                product_fields = self._product_fields[line.product] = {
                    "variant_id": product.variant_id,
                    "product_id": product.product_id,
                    "sku": product.sku,
                    "title": product.title,
                    "variant_title": product.variant_title,
                    "name": f"{product.title} - {product.variant_title}",
                    "vendor": product.vendor,
                    "price": price,
                    "price_set": _money_set(price, cur),
                }
            lines.append(
                {
                    "id": line.line_id,
                    "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
                    **product_fields,
                    "quantity": line.quantity,
                    "current_quantity": st.current[i],
                    "fulfillable_quantity": fulfillable,
                    "fulfillment_status": line_status,
                    "fulfillment_service": "manual",
                    "grams": product.grams,
                    "requires_shipping": plan.source != "pos",
                    "taxable": True,
                    "gift_card": False,
                    "product_exists": True,
                    "total_discount": "0.00",
                    "properties": [],
                    "tax_lines": [
                        {"title": "Sales Tax", "rate": 0.08, "price": money(tax_cents(line_total))}
                    ],
                }
            )
        tax = tax_cents(subtotal)
        total = subtotal + tax + plan.shipping_cents
        canceled = st.cancelled_at is not None
        current_tax = tax_cents(current_subtotal)
        current_total = 0 if canceled else current_subtotal + current_tax + plan.shipping_cents
        refunds = [self._refund(plan, st, k) for k in range(len(st.refunds))]
        fulfillments = [
            {
                "id": child_id(oid, FULFILLMENT_ID_BASE, k),
                "admin_graphql_api_id": f"gid://shopify/Fulfillment/{child_id(oid, FULFILLMENT_ID_BASE, k)}",
                "order_id": oid,
                "status": "success",
                "created_at": ts(when),
                "updated_at": ts(when),
                "location_id": LOCATION_ID,
                "tracking_company": None if plan.source == "pos" else "USPS",
                "tracking_number": None if plan.source == "pos" else f"9400{oid % 10**12:012d}{k}",
                "line_items": [{"id": plan.lines[i].line_id, "quantity": q} for i, q in shipped],
            }
            for k, (when, shipped) in enumerate(st.fulfillments)
        ]
        tags = ", ".join(sorted({t for t in (plan.tags, *st.extra_tags) if t}))
        customer, email, address = self._customer(plan)
        order: dict[str, Any] = {
            "id": oid,
            "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
            "app_id": APP_IDS.get(plan.source, 580111),
            "name": f"#{plan.number}",
            "number": plan.number - 1000,
            "order_number": plan.number,
            "confirmation_number": f"{oid % 36**6:06X}"[-6:],
            "token": f"{oid * 0x9E3779B97F4A7C15 % 2**128:032x}",
            "email": email,
            "contact_email": email,
            "phone": None,
            "test": plan.test,
            "confirmed": True,
            "tags": tags,
            "note": None,
            "source_name": plan.source,
            "currency": cur,
            "presentment_currency": cur,
            "taxes_included": False,
            "subtotal_price": money(subtotal),
            "total_line_items_price": money(subtotal),
            "total_discounts": "0.00",
            "total_tax": money(tax),
            "total_price": money(total),
            "total_outstanding": "0.00" if plan.financial == "paid" else money(total),
            "total_weight": weight,
            "current_subtotal_price": money(0 if canceled else current_subtotal),
            "current_total_tax": money(0 if canceled else current_tax),
            "current_total_price": money(current_total),
            "total_price_set": _money_set(money(total), cur),
            "total_shipping_price_set": _money_set(money(plan.shipping_cents), cur),
            "financial_status": st.financial,
            "fulfillment_status": st.fulfillment_status(),
            "payment_gateway_names": [GATEWAYS.get(plan.source, "manual")],
            "created_at": created,
            "processed_at": created,
            "updated_at": ts(st.updated),
            "cancelled_at": ts(st.cancelled_at) if canceled else None,
            "cancel_reason": st.cancel_reason,
            "closed_at": ts(st.closed_at) if st.closed_at is not None else None,
            "location_id": LOCATION_ID if plan.source == "pos" else None,
            "order_status_url": f"https://{self.shop_domain}/orders/{oid:x}/authenticate",
            "customer": customer,
            "billing_address": address,
            "shipping_address": None if plan.source == "pos" else address,
            "shipping_lines": [
                {
                    "id": child_id(oid, FULFILLMENT_ID_BASE + 10**12, 0),
                    "title": "Standard Shipping",
                    "code": "STANDARD",
                    "price": money(plan.shipping_cents),
                    "source": "shopify",
                }
            ]
            if plan.shipping_cents
            else [],
            "line_items": lines,
            "fulfillments": fulfillments,
            "refunds": refunds,
        }
        if plan.malformed:
            break_order(order, plan.malformed)
        return order

    def _customer(self, plan: OrderPlan) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
        c = plan.customer
        if c is None:
            return None, None, None
        email = f"{c.first_name.lower()}.{c.last_name.lower()}{c.customer_id % 997}@example.com"
        city, province, zip_code = CITIES[c.city]
        name = f"{c.first_name} {c.last_name}"
        address = {
            "name": name,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "address1": f"{c.street_number} {STREETS[c.street]}",
            "address2": None,
            "city": city,
            "province": province,
            "province_code": province,
            "country": "United States",
            "country_code": "US",
            "zip": zip_code,
            "phone": None,
            "company": None,
        }
        customer = {
            "id": c.customer_id,
            "admin_graphql_api_id": f"gid://shopify/Customer/{c.customer_id}",
            "email": email,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "state": "enabled",
            "verified_email": True,
            "tax_exempt": False,
            "currency": self.currency,
            "default_address": {**address, "id": c.customer_id + 11, "default": True},
        }
        return customer, email, address

    def _refund(self, plan: OrderPlan, st: OrderState, k: int) -> dict[str, Any]:
        refund = st.refunds[k]
        oid = plan.id
        refund_id = child_id(oid, REFUND_ID_BASE, k)
        when = self.timestamp(refund.time)
        refund_lines = []
        amount = 0
        for j, (i, quantity, restock_type) in enumerate(refund.lines):
            product = PRODUCTS[plan.lines[i].product]
            subtotal = product.price_cents * quantity
            tax = tax_cents(subtotal)
            amount += subtotal + tax
            rli_id = child_id(oid, REFUND_LINE_ID_BASE, k * 4 + j) if j < 4 else refund_id * 10 + j
            refund_lines.append(
                {
                    "id": rli_id,
                    "line_item_id": plan.lines[i].line_id,
                    "quantity": quantity,
                    "restock_type": restock_type,
                    "location_id": LOCATION_ID if restock_type != "no_restock" else None,
                    "subtotal": subtotal / 100,
                    "total_tax": tax / 100,
                    "subtotal_set": _money_set(money(subtotal), self.currency),
                    "total_tax_set": _money_set(money(tax), self.currency),
                }
            )
        transactions = []
        if refund.paid:
            transaction_id = child_id(oid, TRANSACTION_ID_BASE, k)
            transactions.append(
                {
                    "id": transaction_id,
                    "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{transaction_id}",
                    "order_id": oid,
                    "kind": "refund",
                    "gateway": GATEWAYS.get(plan.source, "manual"),
                    "status": "success",
                    "amount": money(amount),
                    "currency": self.currency,
                    "created_at": when,
                    "processed_at": when,
                }
            )
        return {
            "id": refund_id,
            "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
            "order_id": oid,
            "created_at": when,
            "processed_at": when,
            "note": refund.note,
            "restock": any(rt != "no_restock" for _, _, rt in refund.lines),
            "user_id": None,
            "refund_line_items": refund_lines,
            "transactions": transactions,
            "order_adjustments": [],
        }
