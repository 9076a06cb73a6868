"""What crosses a service boundary: plain, versioned pydantic models (never table models)."""
