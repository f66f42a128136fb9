"""The demo store's fixed catalog and customer name pools (plain data, no randomness)."""

from __future__ import annotations

from typing import NamedTuple


class Product(NamedTuple):
    """One sellable variant."""

    product_id: int
    variant_id: int
    sku: str
    title: str
    variant_title: str
    price_cents: int
    grams: int
    vendor: str


def _catalog() -> tuple[Product, ...]:
    rows = [
        ("Ceramic Mug", ["Red", "Blue", "Sand"], 1800, 420, "Northfield Pottery"),
        ("Organic Tee", ["S", "M", "L", "XL"], 2500, 180, "Loomwell"),
        ("Canvas Tote", ["Natural", "Black"], 2200, 300, "Loomwell"),
        ("Wool Beanie", ["Charcoal", "Mustard"], 2900, 120, "Highland Knit"),
        ("Pour-Over Kettle", ["Matte Black"], 6400, 900, "Brewcraft"),
        ("Single Origin Beans 250g", ["Ethiopia", "Colombia", "Guatemala"], 1650, 260, "Brewcraft"),
        ("Leather Notebook", ["A5", "A6"], 3400, 350, "Paper & Hide"),
        ("Fountain Pen", ["Fine", "Medium"], 4800, 40, "Paper & Hide"),
        ("Scented Candle", ["Cedar", "Fig", "Sea Salt"], 2100, 380, "Wickworks"),
        ("Linen Napkins (4)", ["Oat", "Slate"], 3600, 240, "Loomwell"),
        ("Enamel Pin", ["Moon", "Fern"], 900, 15, "Northfield Pottery"),
        ("Hiking Socks", ["M", "L"], 1400, 90, "Highland Knit"),
    ]
    products: list[Product] = []
    for p_index, (title, variants, price, grams, vendor) in enumerate(rows):
        product_id = 8_123_456_000_000 + p_index * 1_117
        for v_index, variant in enumerate(variants):
            sku = f"{''.join(w[0] for w in title.split() if w[0].isalpha()).upper()}-{variant[:3].upper()}"
            products.append(
                Product(
                    product_id=product_id,
                    variant_id=44_001_230_000_000 + p_index * 97 + v_index,
                    sku=sku,
                    title=title,
                    variant_title=variant,
                    price_cents=price,
                    grams=grams,
                    vendor=vendor,
                )
            )
    return tuple(products)


PRODUCTS = _catalog()

FIRST_NAMES = (
    "Ana", "Li", "Omar", "Grace", "Mateo", "Priya", "Jonas", "Fatima", "Noah", "Yuki", "Sofia", "Kwame",
    "Elena", "Ravi", "Chloe", "Diego", "Hana", "Lucas", "Amara", "Finn",
)  # fmt: skip
LAST_NAMES = (
    "Ruiz", "Chen", "Haddad", "Okafor", "Silva", "Patel", "Berg", "Khan", "Miller", "Sato", "Rossi",
    "Mensah", "Novak", "Iyer", "Martin", "Lopez", "Kim", "Weber", "Diallo", "Murphy",
)  # fmt: skip
CITIES = (
    ("Austin", "TX", "73301"), ("Portland", "OR", "97201"), ("Brooklyn", "NY", "11201"),
    ("Denver", "CO", "80202"), ("Chicago", "IL", "60601"), ("Asheville", "NC", "28801"),
    ("Madison", "WI", "53703"), ("Burlington", "VT", "05401"), ("Tucson", "AZ", "85701"),
    ("Savannah", "GA", "31401"),
)  # fmt: skip
STREETS = ("Main St", "Oak Ave", "Maple Rd", "Pine St", "Cedar Ln", "Elm St", "Lake Dr", "Hill Rd")
LOCATION_ID = 61_234_567_001
"""The store's one stock location (where refunds restock)."""
