"""The five services: capture, inference, levels, ingest, dashboard; and the `soundscape` CLI."""
