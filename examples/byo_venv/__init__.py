"""Example: an actor whose handler runs under an interpreter of your own (``app.py``)."""
