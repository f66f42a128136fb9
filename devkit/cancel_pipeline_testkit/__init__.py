"""Driving a live Dagster instance as a user does: `dagster dev` in a subprocess, its GraphQL API, and
asset selections. Shared by the end-to-end tests and the benchmarks."""
