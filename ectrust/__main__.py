"""``python -m ectrust`` runs the command line."""

from ectrust.cli import app

# Guarded: a spawned judging worker (ectrust/judgepool.py) imports this module again.
if __name__ == "__main__":
    app(prog_name="ectrust")
