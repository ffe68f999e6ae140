"""Alembic migrations of Parley's schema."""
