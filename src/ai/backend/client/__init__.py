"""Client SDK (sync and async sessions) and the user-facing CLI commands."""
