"""The ``takedown`` command: the global options (``--config``, ``--data-dir``), the
top-level commands (serve, status, hash, screen, worker, db, index, key) and every
command group (``GROUPS``), each defined in its own module of this package, imported
and built only when it is invoked."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group_from_info
from typer.models import TyperInfo

from takedown.cli.common import (
    CLI_ACTOR,
    choose,
    chosen_environment,
    err,
    out,
    runtime,
    settings,
    setup_failed,
)
from takedown.cli.consume import consume_cmd
from takedown.cli.retroscan import retroscan
from takedown.errors import ConfigError, TakedownError

if TYPE_CHECKING:
    import socket

    from typer._click import Command, Context, HelpFormatter

    from takedown.config import Settings
    from takedown.media.video import VideoSignals
    from takedown.periodic import PeriodicWorker

# The command groups, in the order `takedown --help` lists them: (module of this package,
# its Typer, the group's help). A group's module is imported, and its commands built,
# only when that group is invoked (or its help asked): building every command of every
# group (typer reads each function's signature and annotations) and importing their
# modules cost more than the rest of `takedown --help`.
GROUPS: dict[str, tuple[str, str, str]] = {
    "user": ("access", "user_app", "People who sign in: moderators, specialists, legal, admins."),
    "bank": ("banks", "bank_app", "Hash banks: create, configure, add, import, export."),
    "exchange": (
        "exchanges",
        "exchange_app",
        "Hash-list exchanges: add one feeding a bank, sync it, list their state.",
    ),
    "entry": (
        "banks",
        "entry_app",
        "Bank entries: disable (false positive) or enable, with the other signals of the "
        "file they were banked from.",
    ),
    "apikey": ("access", "key_app", "API keys for platforms and tools."),
    "db": ("main", "db_app", "Database schema."),
    "outbox": ("outbox", "outbox_app", "Actions for the platform: deliveries and dead letters."),
    "legal": (
        "legal",
        "legal_app",
        "Legal reporting: queue, due filings, DSA and TAKE IT DOWN reports.",
    ),
    "audit": (
        "audit",
        "audit_app",
        "The tamper-evident audit log: verify the hash chain, write a checkpoint.",
    ),
    "evidence": (
        "audit",
        "evidence_app",
        "The evidence vault (legal staff): preserve, hold, export, delete, destroy. "
        "Every command is written to the audit log with its purpose or reason.",
    ),
    "clock": (
        "clock",
        "clock_app",
        "Test and staging only: set a report's or a decision's time.",
    ),
    "connector": (
        "connector",
        "connector_app",
        "Platform connectors (Mastodon) that use Takedown's public API.",
    ),
    "registry": ("retroscan", "registry_app", "The registry of accounts, items and media."),
    "index": ("main", "index_app", "The bank index's snapshot file."),
    "key": ("main", "master_key_app", "The master key that seals media and signs the audit log."),
}


class _LazyGroups(TyperGroup):
    """The ``takedown`` command: its own commands built by typer as usual, the groups
    of :data:`GROUPS` imported and built when one is looked up (exactly as
    ``add_typer`` would have built them); its help lists the groups from
    :data:`GROUPS` without building them."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [name for name in self.commands if name not in GROUPS] + list(GROUPS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in GROUPS and cmd_name not in self.commands:
            module, attribute, help_text = GROUPS[cmd_name]
            group = getattr(importlib.import_module(f"takedown.cli.{module}"), attribute)
            self.commands[cmd_name] = get_group_from_info(
                TyperInfo(group, name=cmd_name, help=help_text, no_args_is_help=True),
                pretty_exceptions_short=app.pretty_exceptions_short,
                suggest_commands=self.suggest_commands,
                rich_markup_mode=self.rich_markup_mode,
            )
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] not in GROUPS:
            for name in GROUPS:  # a mistyped command: "Did you mean" chooses among all
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        listed = [
            (name, self.commands.get(name) or TyperCommand(name, help=GROUPS[name][2]))
            for name in self.list_commands(ctx)
        ]
        listed = [(name, cmd) for name, cmd in listed if not cmd.hidden]
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in listed])


# Plain (click-style) help and tracebacks: typer's rich help costs a tenth of a second at
# every start, and `takedown --help` must answer at once (bench/cli_start.py).
app = typer.Typer(
    cls=_LazyGroups,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Takedown: find, restrict and remove CSAM and NCII.",
    no_args_is_help=True,
)
db_app = typer.Typer(rich_markup_mode=None)
index_app = typer.Typer(rich_markup_mode=None)
master_key_app = typer.Typer(rich_markup_mode=None)
app.command("retroscan")(retroscan)
app.command("consume")(consume_cmd)


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (TOML, or TAKEDOWN_…=value lines); the same as "
            "TAKEDOWN_CONFIG. The environment still wins over it.",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory (embedded database, key file, index snapshot); wins over "
            "TAKEDOWN_DATA_DIR and the config file. Default: ~/.local/share/takedown.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Takedown: find, restrict and remove CSAM and NCII.

    Every command and the server read the same settings wherever they run: --config /
    TAKEDOWN_CONFIG, the environment (TAKEDOWN_…), the data directory. `takedown status`
    shows which database, data directory and master key are in use."""
    choose(config=config, data_dir=data_dir)


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
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Reverse proxies (addresses or networks, comma-separated) whose "
            "X-Forwarded-For/-Proto are believed; '*' trusts all. "
            "Default: TAKEDOWN_FORWARDED_ALLOW_IPS, else 127.0.0.1,::1.",
        ),
    ] = None,
    proxy_headers: Annotated[
        bool | None,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Read X-Forwarded-* from trusted proxies. Default: TAKEDOWN_PROXY_HEADERS, "
            "else on.",
        ),
    ] = None,
) -> None:
    """Run the API (and everything else); SQLite by default. Creates the database (and,
    for the embedded one, its master key) when there is none yet. The settings are
    checked and the address is taken first: when one is wrong or the other in use the
    command fails at once (exit code 2, or 1 for the address), before any other work."""
    from takedown.api.server import listen_sockets

    config = settings(serving=True)
    host = host or config.host
    port = config.port if port is None else port
    if forwarded_allow_ips is not None or proxy_headers is not None:
        config = config.model_copy(
            update={
                "forwarded_allow_ips": config.forwarded_allow_ips
                if forwarded_allow_ips is None
                else forwarded_allow_ips,
                "proxy_headers": config.proxy_headers if proxy_headers is None else proxy_headers,
            }
        )
    try:
        sockets = listen_sockets(host, port, workers)
    except OSError as exc:
        err.print(f"[red]Cannot listen on {host}:{port}:[/red] {exc.strerror or exc}")
        raise typer.Exit(1) from exc
    port = int(sockets[0].getsockname()[1])  # port 0: the one the kernel chose
    try:
        _serve(config, sockets, host, port, demo)
    finally:
        for sock in sockets:
            sock.close()


def _serve(
    config: Settings, sockets: list[socket.socket], host: str, port: int, demo: bool
) -> None:
    import logging

    rt = runtime(create=True, config=config)  # applies migrations
    _log_in_use(config)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    logging.getLogger("takedown.server").info(
        "serving on %s with %d worker process%s",
        url,
        len(sockets),
        "es" if len(sockets) > 1 else "",
    )
    if demo:
        from takedown.demo import prepare_demo

        prepare_demo(rt, out, url)
    if len(sockets) > 1:
        rt.close()
        from takedown.api.server import WorkerOptions, serve_workers
        from takedown.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

        # Each worker counts into files here; a scrape sums them (takedown/metrics.py).
        # Set here too: a spawned worker may import the metrics before its options apply.
        metric_files = prepare_multiprocess_dir(config.data_dir)
        os.environ[MULTIPROC_ENV] = str(metric_files)
        options = WorkerOptions(
            config.access_log,
            log_format=config.log_format,
            environment={**chosen_environment(), MULTIPROC_ENV: str(metric_files)},
            proxy_headers=config.proxy_headers,
            forwarded_allow_ips=config.forwarded_allow_ips,
        )
        raise typer.Exit(serve_workers(sockets, options))
    # The app is imported only where it serves: with several workers each imports it
    # (spawned), and the supervisor starting them sooner is the time saved.
    import uvicorn

    from takedown.api.app import create_app
    from takedown.logs import uvicorn_log_config
    from takedown.memory import freeze_startup

    rt.warm_up()
    app = create_app(rt)
    freeze_startup()  # takedown/memory.py

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="info",
            access_log=config.access_log,
            proxy_headers=config.proxy_headers,
            forwarded_allow_ips=config.forwarded_allow_ips,
            log_config=uvicorn_log_config(config.log_format),
        )
    )
    try:
        server.run(sockets=sockets)
    finally:
        rt.close()
    if not server.started:  # the app could not start (uvicorn logged why)
        raise typer.Exit(3)


def _log_in_use(config: Settings) -> None:
    """What `takedown status` shows, in the server's log (stderr) at every start."""
    import logging

    from takedown.logs import configure
    from takedown.runtime import setup

    lines = setup.describe(config)  # before logging is set up: Alembic's chatter stays out
    configure(config.log_format)
    log = logging.getLogger("takedown.server")
    for line in lines:
        (log.info if line.ok else log.warning)("%s: %s", line.label, line.value)


# -- status ----------------------------------------------------------------------------
@app.command()
def status() -> None:
    """Which config file, data directory, database and master key this command uses
    (the server logs the same at start), the schema revision and a few counts. Creates
    nothing; exit code 1 when something needs fixing."""
    from rich.markup import escape

    from takedown.runtime import setup

    lines = setup.describe(settings())
    width = max(len(line.label) for line in lines)
    for line in lines:
        mark = "" if line.ok else "[red]![/red] "
        out.print(f"{line.label + ':':<{width + 1}} {mark}{escape(line.value)}")
    if not all(line.ok for line in lines):
        raise typer.Exit(code=1)


# -- hash ----------------------------------------------------------------------------
@app.command("hash")
def hash_cmd(
    files: Annotated[list[Path], typer.Argument(help="Image or video files.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Videos as JSON objects too (frames inside).")
    ] = False,
) -> None:
    """Hash images and videos. An image: one JSON object (PDQ with quality and the 8
    rotations/flips, MD5, SHA-256). A video: its frame hashes one a line as Meta's vpdq
    writes them (`frame_number,quality,pdq,timestamp`) after a `# file md5 sha256` line;
    with --json one JSON object (digests, stream facts and the frames). Files that
    cannot be hashed get an error object; exit code 2."""
    import json

    from takedown.media.video import hash_image_upload, hash_video_bytes, is_video

    config = settings()
    limits, video_limits = config.image_limits, config.video_limits
    failed = False
    for path in files:
        record: dict[str, object] = {"file": str(path)}
        try:
            with open(path, "rb") as handle:
                head = handle.read(512)
                video = is_video(head)
                cap = (video_limits if video else limits).max_bytes
                data = head + handle.read(cap + 1 - len(head))
            if video:
                signals = hash_video_bytes(data, video_limits, config.video_sampling)
                if not as_json:
                    sys.stdout.write(_vpdq_lines(str(path), signals))
                    continue
                record.update(signals.to_dict())
            else:
                record.update(hash_image_upload(data, limits).to_dict())
        except TakedownError as exc:
            record["error"] = {"code": exc.code, "message": exc.message}
            failed = True
        except OSError as exc:
            record["error"] = {"code": "file_unreadable", "message": str(exc)}
            failed = True
        sys.stdout.write(json.dumps(record) + "\n")
    if failed:
        raise typer.Exit(code=2)


def _vpdq_lines(file: str, signals: VideoSignals) -> str:
    """A video's frames in the text form of Meta's vpdq hash files."""
    lines = [f"# {file} md5={signals.md5} sha256={signals.sha256}"]
    lines += [f"{f.frame_number},{f.quality},{f.pdq},{f.timestamp:.3f}" for f in signals.frames]
    return "\n".join(lines) + "\n"


# -- screening -----------------------------------------------------------------------
@app.command()
def screen(files: Annotated[list[Path], typer.Argument(help="Image or video files")]) -> None:
    """Screen images and videos against the banks locally; prints one JSON verdict per file."""
    import json

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
def worker(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Run the retroactive scans due now and recompute the case priorities "
            "waiting for it, then exit (cron, scripts).",
        ),
    ] = False,
) -> None:
    """Run retroactive scans, deliver the platform's actions (webhooks) and reporter
    mail, sync the hash exchanges on their schedules and recompute large cases'
    priorities, until stopped.

    `takedown serve` delivers and mails itself; run separate workers (several are safe
    on PostgreSQL) when the API runs on many processes."""
    import signal
    import threading

    config = settings(serving=True)  # a wrong setting is named before the heavy imports
    from takedown.memory import freeze_startup
    from takedown.runtime.workers import (
        start_delivery_worker,
        start_exchange_worker,
        start_mail_worker,
        start_priority_worker,
        start_retroscan_worker,
    )

    rt = runtime(config=config)
    _log_in_use(rt.settings)
    if once:
        out.print(f"{rt.retroscan.run_pending()} retroactive scan(s) run")
        refreshed = rt.cases.refresh_stale_priorities(limit=10_000)
        out.print(f"{refreshed} case priorit{'y' if refreshed == 1 else 'ies'} recomputed")
        return
    workers: list[PeriodicWorker] = [start_retroscan_worker(rt)]
    workers += [w for w in (start_delivery_worker(rt), start_mail_worker(rt)) if w is not None]
    workers += [start_exchange_worker(rt), start_priority_worker(rt)]
    freeze_startup()  # takedown/memory.py
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
    """Apply database migrations (also done at start-up); creates the database when
    there is none yet."""
    from takedown.runtime import setup
    from takedown.store.db import current_revision, make_engine, upgrade

    config = settings()
    try:
        setup.check_database(config, create=True)
    except ConfigError as exc:
        raise setup_failed(exc) from exc
    engine = make_engine(config.resolved_database_url)
    upgrade(engine)
    out.print(
        f"database {config.database_display} at revision {current_revision(engine)} "
        f"({engine.dialect.name})"
    )


@db_app.command("current")
def db_current() -> None:
    """Show the database's migration revision."""
    from takedown.runtime import setup
    from takedown.store.db import current_revision, make_engine

    config = settings()
    try:
        setup.check_database(config, create=False)
    except ConfigError as exc:
        raise setup_failed(exc) from exc
    engine = make_engine(config.resolved_database_url)
    out.print(current_revision(engine) or "empty (run `takedown db upgrade`)")


@db_app.command("backup")
def db_backup(
    directory: Annotated[Path, typer.Argument(help="New directory for the backup.")],
) -> None:
    """Copy the database consistently, while the server runs (SQLite: the online backup
    API; PostgreSQL: pg_dump), with a manifest. Media and evidence are in it, sealed; the
    master key is NOT: keep a copy of it elsewhere (docs/operations.md, Backups)."""
    from takedown.runtime import setup
    from takedown.store.backup import backup

    config = settings()
    try:
        setup.check_database(config, create=False)
        manifest = backup(config.resolved_database_url, directory)
    except ConfigError as exc:
        raise setup_failed(exc) from exc
    out.print(
        f"backed up {config.database_display} (revision {manifest.revision}) to "
        f"{directory / manifest.file}, SHA-256 {manifest.sha256}; its sealed objects open "
        f"with the master key {', '.join(manifest.key_fingerprints)} (not in the backup)"
    )


@db_app.command("restore")
def db_restore(
    directory: Annotated[Path, typer.Argument(help="A directory `takedown db backup` wrote.")],
    replace: Annotated[bool, typer.Option(help="Overwrite a database that is not empty.")] = False,
) -> None:
    """Restore a backup into the configured database (empty, unless --replace), then
    check that the configured master key opens it. Stop the server and workers first."""
    from takedown.store.backup import open_every_sealed_object, restore

    config = settings()
    try:
        manifest = restore(config.resolved_database_url, directory, replace=replace)
    except ConfigError as exc:
        raise setup_failed(exc) from exc
    out.print(f"restored {config.database_display} to revision {manifest.revision}")
    rt = runtime(config=config)  # refuses a master key that does not fit the data
    try:
        opened = open_every_sealed_object(rt.sessions, rt.blobs)
    except ConfigError as exc:
        raise setup_failed(exc) from exc
    finally:
        rt.close()
    out.print(
        f"the master key fits: all {opened} sealed objects (media, evidence) open; "
        "next: `takedown audit verify`"
    )


# -- the master key --------------------------------------------------------------------
@master_key_app.command("new")
def key_new(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write it to this new file (mode 0600)."),
    ] = None,
) -> None:
    """Make a new master key (for a new database, or to rotate: put it first in the key
    file, the old ones below). Prints it, or writes it to a new file readable only by
    you."""
    import os

    from takedown.store.keytext import new_key_text

    text = new_key_text()
    if output is None:
        sys.stdout.write(text + "\n")
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        err.print(f"[red]error[/red]: cannot create {output}: {exc.strerror or exc}")
        raise typer.Exit(code=2) from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    out.print(f"new master key written to {output.absolute()}")


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
