"""Bulk import of assets and listings from CSV or JSONL: streamed, batched, idempotent."""
