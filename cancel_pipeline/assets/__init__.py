"""Dagster assets: raw order pages and the tables derived from them."""
