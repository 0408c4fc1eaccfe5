"""Durable job records in SQLite."""

from remo.store.jobs import JobStore, job_key, parse_job_id

__all__ = ["JobStore", "job_key", "parse_job_id"]
