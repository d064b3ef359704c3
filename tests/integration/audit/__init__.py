"""Tests of the audit store against a real Postgres."""
