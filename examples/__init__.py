"""Example handlers used by the tests and the docs (run them with ``--pythonpath .``)."""
