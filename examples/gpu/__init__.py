"""Example: a GPU actor that reports the devices it was given (``app.py``)."""
