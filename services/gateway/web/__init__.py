"""The reference web catalogue served by the gateway at `/` (docs/DECISIONS.md, "Web catalogue")."""
