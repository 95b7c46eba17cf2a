"""Example: the smallest actor, a function that answers with its payload (``app.py``)."""
