"""Ingestion: the raw assets, their time partitions, the feeds' jobs, schedules and the cancellation sensor."""
