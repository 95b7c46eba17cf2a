"""Keypairs and API tokens live in ``ai.backend.common.db.credentials`` (the gateway reads
them too); re-exported here for the manager's modules."""

from ai.backend.common.db.credentials import ApiTokenRow, KeypairRow

__all__ = ["ApiTokenRow", "KeypairRow"]
