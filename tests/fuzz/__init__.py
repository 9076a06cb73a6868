"""Schemathesis fuzzing of the three services (a package: the modules share fuzz.harness)."""
