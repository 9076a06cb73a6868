"""Matching: the catalogue index in Meilisearch, catalogue search, demands and matches."""
