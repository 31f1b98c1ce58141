"""Alembic migrations for the app database (Postgres or the embedded SQLite)."""
