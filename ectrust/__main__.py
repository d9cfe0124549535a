"""``python -m ectrust`` runs the command line."""

from ectrust.cli import app

app(prog_name="ectrust")
