"""Example: a KServe v2 model served by an actor (``app.py``)."""
