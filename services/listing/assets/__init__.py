"""IP assets: registration with validated identifiers, dedupe by (kind, identifier)."""
