"""The ``takedown`` command: serve, hash, banks, API keys, database."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from takedown.config import Settings
from takedown.domain.hashlists import FORMATS, HashRecord, detect_format
from takedown.errors import TakedownError
from takedown.media import hash_file
from takedown.media.signals import signal_type
from takedown.runtime import Runtime, open_runtime
from takedown.services.banks import AddResult, Provenance

app = typer.Typer(help="Takedown: find, restrict and remove CSAM and NCII.", no_args_is_help=True)
bank_app = typer.Typer(
    help="Hash banks: create, configure, add, import, export.", no_args_is_help=True
)
entry_app = typer.Typer(
    help="Single bank entries: disable (false positive) or enable.", no_args_is_help=True
)
key_app = typer.Typer(help="API keys for platforms and tools.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(
    help="People who sign in: moderators, specialists, legal, admins.", no_args_is_help=True
)
app.add_typer(user_app, name="user")
app.add_typer(bank_app, name="bank")
app.add_typer(entry_app, name="entry")
app.add_typer(key_app, name="apikey")
app.add_typer(db_app, name="db")

out = Console(soft_wrap=True)  # long paths and hashes stay on one line
err = Console(stderr=True, soft_wrap=True)
CLI_ACTOR = "cli"


def _runtime() -> Runtime:
    return open_runtime(Settings())


def _fail(exc: TakedownError) -> typer.Exit:
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}")
    rejected = exc.details.get("rejected") if exc.details else None
    if rejected:
        for r in rejected[:50]:
            err.print(f"  line {r['line']}: {r['reason']}")
        if len(rejected) > 50:
            err.print(f"  … and {len(rejected) - 50} more")
    return typer.Exit(code=2)


# -- serve ---------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes, each with its own index and its own listening socket "
            "(SO_REUSEPORT, so connections spread evenly).",
        ),
    ] = 1,
    demo: Annotated[
        bool,
        typer.Option(
            help="Create a demo bank of stand-in images and a demo API key, and print what to try."
        ),
    ] = False,
) -> None:
    """Run the API (and everything else); SQLite by default."""
    import uvicorn

    from takedown.api.app import create_app

    settings = Settings()
    rt = open_runtime(settings)  # applies migrations
    host = host or settings.host
    port = port or settings.port
    if demo:
        from takedown.demo import prepare_demo

        prepare_demo(rt, out, f"http://{host}:{port}")
    if workers > 1:
        rt.close()
        from takedown.api.server import WorkerOptions, serve_workers

        try:
            code = serve_workers(host, port, workers, WorkerOptions(settings.access_log))
        except OSError as exc:
            err.print(f"[red]Cannot listen on {host}:{port}:[/red] {exc.strerror or exc}")
            raise typer.Exit(1) from exc
        raise typer.Exit(code)
    rt.warm_up()
    uvicorn.run(
        create_app(rt), host=host, port=port, log_level="info", access_log=settings.access_log
    )


# -- hash ----------------------------------------------------------------------------
@app.command("hash")
def hash_cmd(files: Annotated[list[Path], typer.Argument(help="Image files.")]) -> None:
    """Print one JSON object per file: PDQ (with quality and the 8 rotations/flips),
    MD5 and SHA-256. Files that cannot be hashed get an error object; exit code 2."""
    settings = Settings()
    failed = False
    for path in files:
        record: dict[str, object] = {"file": str(path)}
        try:
            record.update(hash_file(path, settings.image_limits).to_dict())
        except TakedownError as exc:
            record["error"] = {"code": exc.code, "message": exc.message}
            failed = True
        except OSError as exc:
            record["error"] = {"code": "file_unreadable", "message": str(exc)}
            failed = True
        sys.stdout.write(json.dumps(record) + "\n")
    if failed:
        raise typer.Exit(code=2)


# -- banks ---------------------------------------------------------------------------
@bank_app.command("create")
def bank_create(
    name: str,
    source: Annotated[
        str,
        typer.Option(
            help="ncmec, stopncii, take_it_down, tech_coalition, threatexchange, own, other"
        ),
    ] = "own",
    action: Annotated[
        str, typer.Option(help="What a match means: block, review, record")
    ] = "review",
    threshold: Annotated[int | None, typer.Option(help="PDQ distance threshold")] = None,
    quality_floor: Annotated[int | None, typer.Option(help="PDQ quality floor")] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a bank."""
    try:
        view = _runtime().banks.create_bank(
            name,
            actor=CLI_ACTOR,
            source=source,
            match_action=action,
            pdq_threshold=threshold,
            pdq_quality_floor=quality_floor,
            description=description,
        )
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(
        f"created bank [bold]{view.name}[/bold] ({view.id}): match → {view.match_action}, "
        f"PDQ ≤ {view.pdq_threshold}, quality ≥ {view.pdq_quality_floor}"
    )


@bank_app.command("list")
def bank_list() -> None:
    """List banks with their policy and entry counts."""
    table = Table("name", "source", "match", "PDQ ≤", "quality ≥", "entries", "enabled", "state")
    for b in _runtime().banks.list_banks():
        table.add_row(
            b.name,
            b.source,
            b.match_action,
            str(b.pdq_threshold),
            str(b.pdq_quality_floor),
            str(b.entries),
            str(b.enabled_entries),
            "enabled" if b.enabled else f"disabled: {b.disabled_reason}",
        )
    out.print(table)


@bank_app.command("show")
def bank_show(name: str) -> None:
    """Describe one bank as JSON."""
    try:
        view = _runtime().banks.get_bank(name)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print_json(json.dumps(view.__dict__, default=str))


@bank_app.command("update")
def bank_update(
    name: str,
    action: Annotated[str | None, typer.Option(help="block, review, record")] = None,
    threshold: Annotated[int | None, typer.Option()] = None,
    quality_floor: Annotated[int | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a bank's policy; effective for the next query."""
    try:
        view = _runtime().banks.update_bank(
            name,
            actor=CLI_ACTOR,
            match_action=action,
            pdq_threshold=threshold,
            pdq_quality_floor=quality_floor,
            description=description,
        )
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(
        f"{view.name}: match → {view.match_action}, PDQ ≤ {view.pdq_threshold}, "
        f"quality ≥ {view.pdq_quality_floor}"
    )


@bank_app.command("disable")
def bank_disable(name: str, reason: Annotated[str, typer.Option(help="Why")]) -> None:
    """Disable a whole bank (its entries stop matching at once)."""
    try:
        _runtime().banks.update_bank(name, actor=CLI_ACTOR, enabled=False, reason=reason)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"disabled bank {name}")


@bank_app.command("enable")
def bank_enable(name: str) -> None:
    """Re-enable a disabled bank."""
    try:
        _runtime().banks.update_bank(name, actor=CLI_ACTOR, enabled=True)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"enabled bank {name}")


@bank_app.command("add")
def bank_add(
    name: str,
    hashes: Annotated[list[str], typer.Argument(help="Hashes as hex")],
    type_: Annotated[
        str | None, typer.Option("--type", help="pdq, md5 or sha256 (default: guessed from length)")
    ] = None,
    source_id: Annotated[str | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add hashes to a bank."""
    from takedown.media.signals import guess_signal_type

    try:
        records = [
            HashRecord(
                (signal_type(type_) if type_ else guess_signal_type(h)).name,
                h,
                None,
                None,
                source_id,
                category,
                note,
            )
            for h in hashes
        ]
        result = _runtime().banks.add_hashes(name, records, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise _fail(exc) from None
    _summary(result)


@bank_app.command("add-media")
def bank_add_media(
    name: str,
    files: Annotated[list[Path], typer.Argument(help="Image files")],
    source_id: Annotated[str | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Hash images and bank their PDQ, MD5 and SHA-256."""
    rt = _runtime()
    failed = False
    for path in files:
        try:
            data = path.read_bytes()
            result = rt.banks.add_media(
                name, data, Provenance(None, source_id, category, note), actor=CLI_ACTOR
            )
        except TakedownError as exc:
            err.print(f"[red]{path}[/red]: {exc.code}: {exc.message}")
            failed = True
            continue
        out.print(f"{path}: added {result.added}, already present {result.already_present}")
        for s in result.skipped:
            out.print(f"  [yellow]{s}[/yellow]")
    if failed:
        raise typer.Exit(code=2)


@bank_app.command("import")
def bank_import(
    name: str,
    file: Annotated[Path, typer.Argument(help="Hash list file")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="text, csv or jsonl (default: from the file)")
    ] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Signal type of a text list")] = None,
    source: Annotated[str | None, typer.Option(help="Provenance source for all lines")] = None,
    category: Annotated[str | None, typer.Option()] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the valid lines even if some are rejected")
    ] = False,
) -> None:
    """Import a hash list: all or nothing unless --skip-invalid; rejected lines are
    listed with their numbers."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error[/red]: cannot read {file}: {exc}")
        raise typer.Exit(code=2) from None
    lines = text.splitlines()
    fmt = fmt or detect_format(lines[0] if lines else "", file.name)
    if fmt not in FORMATS:
        err.print(f"[red]error[/red]: unknown format {fmt!r}; use {', '.join(FORMATS)}")
        raise typer.Exit(code=2)
    rt = _runtime()
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("import", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            result = rt.banks.import_list(
                name,
                lines,
                fmt,
                actor=CLI_ACTOR,
                default_type=type_,
                provenance=Provenance(source=source, category=category),
                skip_invalid=skip_invalid,
                progress=on_progress,
            )
        except TakedownError as exc:
            progress.stop()
            raise _fail(exc) from None
    _summary(result)


@bank_app.command("export")
def bank_export(
    name: str,
    fmt: Annotated[str, typer.Option("--format", help="text, csv or jsonl")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    include_disabled: Annotated[bool, typer.Option()] = False,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="Only this signal type (a text list holds one type)"),
    ] = None,
) -> None:
    """Export a bank's entries (csv is the threatexchange/HMA `signal_type,signal` form)."""
    rt = _runtime()
    try:
        if output:
            # Write beside the target and rename, so a failed export leaves no half file.
            partial = output.with_name(output.name + ".partial")
            try:
                with partial.open("w", encoding="utf-8") as fh:
                    n = rt.banks.export_list(
                        name,
                        fmt,
                        fh,
                        include_disabled=include_disabled,
                        with_provenance=fmt == "jsonl",
                        only_type=type_,
                    )
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
            err.print(f"wrote {n} entries to {output}")
        else:
            rt.banks.export_list(
                name,
                fmt,
                sys.stdout,
                include_disabled=include_disabled,
                with_provenance=fmt == "jsonl",
                only_type=type_,
            )
    except TakedownError as exc:
        raise _fail(exc) from None


def _summary(result: AddResult) -> None:
    out.print(
        f"added {result.added}, already present {result.already_present}, "
        f"duplicates in input {result.duplicates_in_input}, "
        f"rejected {len(result.rejected)}"
    )
    for r in result.rejected[:50]:
        out.print(f"  [yellow]line {r.line_number}[/yellow]: {r.reason}")
    if len(result.rejected) > 50:
        out.print(f"  … and {len(result.rejected) - 50} more")


# -- entries -------------------------------------------------------------------------
@entry_app.command("disable")
def entry_disable(entry_id: str, reason: Annotated[str, typer.Option(help="Why")]) -> None:
    """Disable one entry (e.g. a false positive); effective for the next query."""
    try:
        _runtime().banks.set_entry_enabled(entry_id, False, actor=CLI_ACTOR, reason=reason)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"disabled entry {entry_id}")


@entry_app.command("enable")
def entry_enable(entry_id: str) -> None:
    """Re-enable an entry."""
    try:
        _runtime().banks.set_entry_enabled(entry_id, True, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"enabled entry {entry_id}")


# -- screening -----------------------------------------------------------------------
@app.command()
def screen(files: Annotated[list[Path], typer.Argument(help="Image files")]) -> None:
    """Screen files against the banks locally; prints one JSON verdict per file."""
    rt = _runtime()
    for path in files:
        try:
            result = rt.screening.screen_media(
                path.read_bytes(), actor=CLI_ACTOR, content_ref=str(path)
            )
        except TakedownError as exc:
            sys.stdout.write(json.dumps({"file": str(path), "error": exc.to_dict()}) + "\n")
            continue
        sys.stdout.write(
            json.dumps(
                {
                    "file": str(path),
                    "verdict": result.verdict.value,
                    "matches": [
                        {k: v for k, v in m.__dict__.items() if k != "added_at"}
                        for m in result.matches
                    ],
                }
            )
            + "\n"
        )


# -- API keys ------------------------------------------------------------------------
@key_app.command("create")
def key_create(
    name: str,
    scope: Annotated[
        list[str], typer.Option("--scope", help="screen, banks:read, banks:write, admin (repeat)")
    ],
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    try:
        view, secret = _runtime().api_keys.create(name, scope, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise _fail(exc) from None
    err.print(
        f"API key {view.name} ({view.id}) scopes {','.join(view.scopes)}; "
        "store it now, it is not shown again:"
    )
    sys.stdout.write(secret + "\n")


@key_app.command("list")
def key_list() -> None:
    """List API keys (never the secrets)."""
    table = Table("id", "name", "prefix", "scopes", "created", "last used", "revoked")
    for k in _runtime().api_keys.list():
        table.add_row(
            k.id,
            k.name,
            k.prefix + "…",
            ",".join(k.scopes),
            str(k.created_at)[:19],
            str(k.last_used_at or "")[:19],
            str(k.revoked_at or "")[:19],
        )
    out.print(table)


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke an API key at once."""
    try:
        _runtime().api_keys.revoke(key_id, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"revoked {key_id}")


# -- background work -----------------------------------------------------------------
@app.command()
def worker() -> None:
    """Deliver the platform's actions (webhooks) and reporter mail until stopped.

    `takedown serve` does this itself; run separate workers (several are safe on
    PostgreSQL) when the API runs on many processes."""
    import signal
    import threading

    from takedown.services.delivery import start_delivery_worker
    from takedown.services.mail import start_mail_worker

    rt = _runtime()
    workers = [w for w in (start_delivery_worker(rt), start_mail_worker(rt)) if w is not None]
    if not workers:
        err.print(
            "[yellow]nothing to do:[/yellow] set TAKEDOWN_WEBHOOK_URL and/or TAKEDOWN_SMTP_HOST"
        )
        raise typer.Exit(code=2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.print(f"delivering ({len(workers)} worker thread(s)); Ctrl-C to stop")
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    for w in workers:
        w.stop()


outbox_app = typer.Typer(
    help="Actions for the platform: deliveries and dead letters.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("list")
def outbox_list(
    state: Annotated[
        str | None, typer.Option(help="pending, delivering, acknowledged, dead_letter")
    ] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Recent actions and their delivery state."""
    rt = _runtime()
    try:
        rows = rt.outbox.list(state=state, limit=limit)
    except TakedownError as exc:
        raise _fail(exc) from None
    table = Table("id", "topic", "target", "state", "attempts", "last error")
    for r in rows:
        table.add_row(
            r.id, r.topic, r.target_id, r.state, str(r.attempts), (r.last_error or "")[:60]
        )
    out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(rt.outbox.counts().items())))


@outbox_app.command("redeliver")
def outbox_redeliver(outbox_id: str) -> None:
    """Queue a dead-lettered action again."""
    try:
        _runtime().outbox.redeliver(outbox_id, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"queued {outbox_id} again")


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
        view = _runtime().users.create(username, password, role, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise _fail(exc) from None
    out.print(f"created user {view.username} ({view.id}) with role {view.role}")


@user_app.command("list")
def user_list() -> None:
    """List users."""
    table = Table("id", "username", "role", "active", "created")
    for u in _runtime().users.list():
        table.add_row(u.id, u.username, u.role, str(u.active), str(u.created_at)[:19])
    out.print(table)


# -- database ------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (also done at start-up)."""
    from takedown.store.db import current_revision, make_engine, upgrade

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    out.print(f"database at revision {current_revision(engine)} ({engine.dialect.name})")


@db_app.command("current")
def db_current() -> None:
    """Show the database's migration revision."""
    from takedown.store.db import current_revision, make_engine

    engine = make_engine(Settings().resolved_database_url)
    out.print(current_revision(engine) or "empty (run `takedown db upgrade`)")


# -- legal (its commands live in cli_legal.py) ----------------------------------------
def _add_legal() -> None:
    from takedown.cli_legal import legal_app

    app.add_typer(legal_app, name="legal")


_add_legal()
# -- audit log and evidence vault (commands in cli_audit.py) ---------------------------
from takedown.cli_audit import audit_app, evidence_app  # noqa: E402

app.add_typer(audit_app, name="audit")
app.add_typer(evidence_app, name="evidence")


# -- index snapshots ------------------------------------------------------------------
index_app = typer.Typer(help="The bank index's snapshot file.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("snapshot")
def index_snapshot_command() -> None:
    """Write a snapshot of the bank index into the data directory, so serving workers
    start from it (memory-mapped, shared) instead of replaying the database. Run it
    after large imports, e.g. from cron; workers follow newer rows themselves."""
    import time

    from takedown.services import index_snapshot

    rt = _runtime()
    target = index_snapshot.snapshot_path(rt.settings.data_dir)
    start = time.perf_counter()
    index_snapshot.load(rt.matcher.follower, target)  # start from the previous one
    written = index_snapshot.write(rt.matcher.follower, target)
    rt.close()
    out.print(f"{written} hashes written to {target} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":  # pragma: no cover
    app()
