"""The three services. No service imports another (a test checks this)."""
