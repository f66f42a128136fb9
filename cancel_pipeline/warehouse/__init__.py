"""The DuckDB warehouse: schema and the set-based SQL that derives the cancellation tables."""
