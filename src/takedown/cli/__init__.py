"""The ``takedown`` command line (Typer, rich progress bars).

``main.py`` holds the application and the top-level commands and mounts every group;
each group lives in its own module (``banks``, ``access``, ``outbox``, ``legal``,
``audit``) and shares only ``common`` (consoles, runtime, error exit) with the rest.
"""

from takedown.cli.main import app

__all__ = ["app"]
