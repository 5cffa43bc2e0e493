"""Test harness: real hub and agent processes, a real PostgreSQL, waiting helpers."""
