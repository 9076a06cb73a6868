"""Buyer demands and their explained matches to catalogue listings."""
