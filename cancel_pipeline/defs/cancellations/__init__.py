"""Cancellations: the tables derived from the raw layer and their checks."""
