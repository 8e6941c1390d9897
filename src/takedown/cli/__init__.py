"""The ``takedown`` command line (Typer, rich progress bars).

``main.py`` holds the application and the top-level commands and lists every group
(``GROUPS``), imported and built only when invoked; each group lives in its own module
(``banks``, ``access``, ``outbox``, ``legal``, ``audit``…) and shares only ``common``
(consoles, runtime, error exit) with the rest.
"""

from takedown.cli.main import app

__all__ = ["app"]
