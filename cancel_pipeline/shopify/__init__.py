"""Shopify Admin API access: the REST client, its Dagster resource, and the built-in demo store."""
