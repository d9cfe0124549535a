"""Bundled demo shops and the ``ectrust demo`` command."""
