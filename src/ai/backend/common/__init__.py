"""Shared vocabulary of Backend.AI Actors: DTOs, config, logging, framing, transport, auth."""

__version__ = "0.1.0"
