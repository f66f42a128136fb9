"""Cancellations: the tables derived from the raw layer, their checks, their job and the automation sensor."""
