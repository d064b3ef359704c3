"""Tests of the audit store against SQLite."""
