"""In-replica server that loads a user handler and speaks the frame protocol.

Depends only on the standard library (plus optional orjson / uvloop) so that it can run inside
any model image.
"""
