"""Offers as catalogue documents, for services: the current snapshot (and partner upserts)."""
