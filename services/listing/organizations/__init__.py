"""Organisations, their API keys, and key introspection for the other services."""
