"""Seed data: real public Chinese patent records as catalogue assets.

For the demo seed, tests and benchmarks; see ``infra/seed/records.py``.
"""
