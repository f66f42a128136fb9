"""Runs: noticing runs whose process died without reporting, so they stop holding the writers' pool."""
