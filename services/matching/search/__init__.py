"""Catalogue search over the Meilisearch index."""
