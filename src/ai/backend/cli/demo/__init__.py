"""``./backend.ai demo``: the platform's tour through the real services."""
