"""Outbox: notices of canceled orders to downstream Cancel Order APIs, their check and the retry job."""
