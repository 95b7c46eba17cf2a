"""Request authentication shared by the manager (verifies) and the client SDK (signs)."""
