"""Helpers for the test suites: where the local services are, unique names, child processes."""
