"""``takedown apikey …`` and ``takedown user …``: who may call the API and sign in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from takedown.cli.common import CLI_ACTOR, err, fail, out, print_json_lines, print_table, runtime
from takedown.domain.scopes import SCOPES
from takedown.errors import TakedownError

key_app = typer.Typer(
    rich_markup_mode=None,
)
user_app = typer.Typer(
    rich_markup_mode=None,
)


# -- API keys ------------------------------------------------------------------------
@key_app.command("create")
def key_create(
    name: str,
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help=f"One of {', '.join(SCOPES)}; repeat for several. "
            "'platform' is the usual integration key.",
        ),
    ],
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    try:
        view, secret = runtime().api_keys.create(name, scope, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise fail(exc) from None
    err.print(
        f"API key {view.name} ({view.id}) scopes {','.join(view.scopes)}; "
        "store it now, it is not shown again:"
    )
    sys.stdout.write(secret + "\n")


_JSON = Annotated[bool, typer.Option("--json", help="One JSON object per line, every field whole.")]


@key_app.command("list")
def key_list(json_lines: _JSON = False) -> None:
    """List API keys (never the secrets)."""
    keys = runtime().api_keys.list()
    if json_lines:
        print_json_lines(keys)
        return
    from rich.table import Table

    table = Table("id", "name", "prefix", "scopes", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            k.id,
            k.name,
            k.prefix + "…",
            ",".join(k.scopes),
            str(k.created_at)[:19],
            str(k.last_used_at or "")[:19],
            str(k.revoked_at or "")[:19],
        )
    print_table(table)


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke an API key at once."""
    try:
        runtime().api_keys.revoke(key_id, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(f"revoked {key_id}")


# -- users ---------------------------------------------------------------------------
@user_app.command("create")
def user_create(
    username: str,
    role: Annotated[
        str, typer.Option(help="admin, moderator, child_safety_specialist, legal, platform")
    ],
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the password from this file (else TAKEDOWN_NEW_PASSWORD, else a prompt)."
        ),
    ] = None,
) -> None:
    """Create a user (the first admin is created this way)."""
    import os

    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").strip()
    elif os.environ.get("TAKEDOWN_NEW_PASSWORD"):
        password = os.environ["TAKEDOWN_NEW_PASSWORD"]
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        view = runtime().users.create(username, password, role, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(f"created user {view.username} ({view.id}) with role {view.role}")


@user_app.command("list")
def user_list(json_lines: _JSON = False) -> None:
    """List users."""
    users = runtime().users.list()
    if json_lines:
        print_json_lines(users)
        return
    from rich.table import Table

    table = Table("id", "username", "role", "active", "created")
    for u in users:
        table.add_row(u.id, u.username, u.role, str(u.active), str(u.created_at)[:19])
    print_table(table)
