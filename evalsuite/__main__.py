"""``python -m evalsuite`` runs the command line."""

from evalsuite.cli import app

app()
