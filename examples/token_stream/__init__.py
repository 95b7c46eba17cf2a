"""Example: a generator that streams tokens as partial results (``app.py``)."""
