"""Example: a class handler that keeps state across calls (``app.py``)."""
