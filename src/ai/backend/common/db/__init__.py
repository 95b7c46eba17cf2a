"""Database plumbing shared by the services that own tables (manager, gateway)."""
