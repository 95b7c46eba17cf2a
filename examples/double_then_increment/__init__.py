"""Example: a pipeline of two actors, ``doubler`` then ``incrementer`` (``app.py``)."""
