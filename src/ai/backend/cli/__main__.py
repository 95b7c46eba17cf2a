"""``python -m ai.backend.cli`` (what ``./backend.ai`` runs)."""

from ai.backend.cli.main import main

if __name__ == "__main__":
    main(prog_name="backend.ai")
