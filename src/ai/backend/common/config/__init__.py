"""Configuration: Pydantic models per service, loaded env > TOML file > defaults (DESIGN.md §2)."""
