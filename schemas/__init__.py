"""Typed data shared by every layer: settings, records and error types. Depends on pydantic only."""
