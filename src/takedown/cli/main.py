"""The ``takedown`` command: the top-level commands (serve, hash, screen, worker, db,
index) and every command group, each defined in its own module of this package."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from takedown.cli.access import key_app, user_app
from takedown.cli.audit import audit_app, evidence_app
from takedown.cli.banks import bank_app, entry_app
from takedown.cli.common import CLI_ACTOR, err, out, runtime
from takedown.cli.legal import legal_app
from takedown.cli.outbox import outbox_app
from takedown.config import Settings
from takedown.errors import TakedownError
from takedown.media import hash_file
from takedown.runtime import open_runtime

app = typer.Typer(help="Takedown: find, restrict and remove CSAM and NCII.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
index_app = typer.Typer(help="The bank index's snapshot file.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(bank_app, name="bank")
app.add_typer(entry_app, name="entry")
app.add_typer(key_app, name="apikey")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
app.add_typer(legal_app, name="legal")
app.add_typer(audit_app, name="audit")
app.add_typer(evidence_app, name="evidence")
app.add_typer(index_app, name="index")


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


# -- screening -----------------------------------------------------------------------
@app.command()
def screen(files: Annotated[list[Path], typer.Argument(help="Image files")]) -> None:
    """Screen files against the banks locally; prints one JSON verdict per file."""
    rt = runtime()
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


# -- background work -----------------------------------------------------------------
@app.command()
def worker() -> None:
    """Deliver the platform's actions (webhooks) and reporter mail until stopped.

    `takedown serve` does this itself; run separate workers (several are safe on
    PostgreSQL) when the API runs on many processes."""
    import signal
    import threading

    from takedown.runtime.workers import start_delivery_worker, start_mail_worker

    rt = runtime()
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


# -- index snapshots ------------------------------------------------------------------


@index_app.command("snapshot")
def index_snapshot_command() -> None:
    """Write a snapshot of the bank index into the data directory, so serving workers
    start from it (memory-mapped, shared) instead of replaying the database. Run it
    after large imports, e.g. from cron; workers follow newer rows themselves."""
    import time

    from takedown.services.index import snapshot as index_snapshot

    rt = runtime()
    target = index_snapshot.snapshot_path(rt.settings.data_dir)
    start = time.perf_counter()
    index_snapshot.load(rt.matcher.follower, target)  # start from the previous one
    written = index_snapshot.write(rt.matcher.follower, target)
    rt.close()
    out.print(f"{written} hashes written to {target} in {time.perf_counter() - start:.1f}s")
