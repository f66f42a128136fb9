"""Refresh: re-import orders by id, or every order stuck in 'created'."""
