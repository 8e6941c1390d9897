"""``takedown connector …``: run a platform connector (a service of its own, using only
Takedown's public HTTP API and webhooks; see docs/integrations/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from takedown.cli.common import err

connector_app = typer.Typer(
    rich_markup_mode=None,
)


@connector_app.command("mastodon")
def mastodon(
    config: Annotated[Path, typer.Option("--config", help="The connector's TOML file.")],
    host: Annotated[str | None, typer.Option(help="Listen address (else the file's).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (else the file's).")] = None,
) -> None:
    """Serve the Mastodon connector: Mastodon's webhooks in, Takedown's actions out
    (docs/integrations/mastodon.md)."""
    from takedown.connectors.mastodon import ConfigError, serve

    try:
        serve(config, host, port)
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
