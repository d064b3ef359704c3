"""Revisions of the audit store's schema (Alembic skips this file)."""
