"""Listings: terms, lifecycle and review, publishability, concurrency, audit history."""
