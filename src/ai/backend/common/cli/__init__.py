"""Click helpers shared by every package's command group."""
