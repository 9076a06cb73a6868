"""The open catalogue: what frontends read without a key."""
