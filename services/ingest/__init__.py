"""ingest: result topics -> durable SQLite spool -> PostgreSQL, in idempotent batches."""
