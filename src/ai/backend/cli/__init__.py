"""The ``./backend.ai`` entry point: dispatches to each package's click group."""
