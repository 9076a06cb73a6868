"""Table models of the `gateway` schema. They never leave this service."""

SCHEMA = "gateway"
