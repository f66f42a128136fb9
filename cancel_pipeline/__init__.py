"""cancel_pipeline: Shopify order cancellations, kept correct and current in a DuckDB warehouse."""
