"""The gateway's tables (jobs and their events), on the shared metadata."""

from .jobs import JobEventRow, JobRow

__all__ = ["JobEventRow", "JobRow"]
