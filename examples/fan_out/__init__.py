"""Example: fan-out (one message becomes many) and fan-in of the results (``app.py``)."""
