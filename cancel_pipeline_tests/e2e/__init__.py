"""End-to-end and browser tests: the project run the way a user runs it, through `dagster dev`."""
