"""``python -m takedown.cli`` (how tests and benchmarks start servers)."""

from takedown.cli.main import app

app()
