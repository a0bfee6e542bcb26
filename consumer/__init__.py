"""Consumer-group processes that ingest read batches into PostgreSQL (SPEC §5)."""
