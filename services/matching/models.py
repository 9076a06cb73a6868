"""Table models of the `matching` schema. They never leave this service."""

SCHEMA = "matching"
