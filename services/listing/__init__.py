"""Listing: the system of record (organisations, API keys, assets, listings, deals, change feed)."""
