"""``takedown bank …`` and ``takedown entry …``: hash banks and their entries."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from takedown.cli.common import (
    CLI_ACTOR,
    err,
    fail,
    out,
    print_json_lines,
    print_table,
    real_console,
    runtime,
)
from takedown.errors import TakedownError

if TYPE_CHECKING:
    from takedown.services.banks.service import AddResult, SettingChange

bank_app = typer.Typer(
    rich_markup_mode=None,
)
entry_app = typer.Typer(
    rich_markup_mode=None,
)


# -- banks ---------------------------------------------------------------------------
_SETTING = Annotated[
    list[str] | None,
    typer.Option(
        help="A setting for one signal type, TYPE:FIELD=N with FIELD threshold, "
        "quality_floor or match_percent (e.g. dhash:threshold=8); repeatable. "
        "`takedown bank show` lists every type's settings.",
    ),
]
_FIELDS = ("threshold", "quality_floor", "match_percent")
_JSON = Annotated[bool, typer.Option("--json", help="One JSON object per line, every field whole.")]


def _settings(given: list[str] | None) -> dict[str, SettingChange] | None:
    if not given:
        return None
    from takedown.services.banks.service import SettingChange

    fields: dict[str, dict[str, int]] = {}
    for text in given:
        kind, _, rest = text.partition(":")
        field, _, value = rest.partition("=")
        if not kind or field not in _FIELDS or not value.strip().lstrip("-").isdigit():
            raise typer.BadParameter(
                f"{text!r} is not TYPE:FIELD=N with FIELD one of {', '.join(_FIELDS)}.",
                param_hint="--setting",
            )
        fields.setdefault(kind, {})[field] = int(value)
    return {kind: SettingChange(**values) for kind, values in fields.items()}


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
        str,
        typer.Option(
            help="What a match means: block, review, record, negative (known benign: "
            "never blocked or restricted)"
        ),
    ] = "review",
    threshold: Annotated[int | None, typer.Option(help="PDQ distance threshold")] = None,
    quality_floor: Annotated[int | None, typer.Option(help="PDQ quality floor")] = None,
    description: Annotated[str, typer.Option()] = "",
    setting: _SETTING = None,
) -> None:
    """Create a bank."""
    try:
        view = runtime().banks.create_bank(
            name,
            actor=CLI_ACTOR,
            source=source,
            match_action=action,
            pdq_threshold=threshold,
            pdq_quality_floor=quality_floor,
            description=description,
            signal_settings=_settings(setting),
        )
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(
        f"created bank [bold]{view.name}[/bold] ({view.id}): match → {view.match_action}, "
        f"PDQ ≤ {view.pdq_threshold}, quality ≥ {view.pdq_quality_floor}"
    )


@bank_app.command("list")
def bank_list(json_lines: _JSON = False) -> None:
    """List banks with their policy and entry counts."""
    banks = runtime().banks.list_banks()
    if json_lines:
        print_json_lines(banks)
        return
    from rich.table import Table

    table = Table("name", "source", "match", "PDQ ≤", "quality ≥", "entries", "enabled", "state")
    for b in banks:
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
    print_table(table)


@bank_app.command("show")
def bank_show(name: str) -> None:
    """Describe one bank as JSON."""
    try:
        view = runtime().banks.get_bank(name)
    except TakedownError as exc:
        raise fail(exc) from None
    out.print_json(json.dumps(view.__dict__, default=str))


@bank_app.command("update")
def bank_update(
    name: str,
    action: Annotated[str | None, typer.Option(help="block, review, record, negative")] = None,
    threshold: Annotated[int | None, typer.Option()] = None,
    quality_floor: Annotated[int | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    setting: _SETTING = None,
    share_to: Annotated[
        list[str] | None,
        typer.Option(
            help="Offer this bank's confirmed hashes to this exchange (repeatable); each "
            "offer waits for the legal team's approval. Off unless set."
        ),
    ] = None,
    stop_sharing_to: Annotated[
        list[str] | None,
        typer.Option(help="Stop offering this bank's hashes to this exchange (repeatable)."),
    ] = None,
) -> None:
    """Change a bank's policy; effective for the next query."""
    rt = runtime()
    try:
        targets: list[str] | None = None
        if share_to or stop_sharing_to:
            current = rt.banks.get_bank(name).share_to
            dropped = set(stop_sharing_to or ())
            targets = [n for n in [*current, *(share_to or ())] if n not in dropped]
        view = rt.banks.update_bank(
            name,
            actor=CLI_ACTOR,
            match_action=action,
            pdq_threshold=threshold,
            pdq_quality_floor=quality_floor,
            description=description,
            signal_settings=_settings(setting),
            share_to=targets,
        )
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(
        f"{view.name}: match → {view.match_action}, PDQ ≤ {view.pdq_threshold}, "
        f"quality ≥ {view.pdq_quality_floor}, shares to "
        f"{', '.join(view.share_to) or 'no exchange'}"
    )


@bank_app.command("disable")
def bank_disable(name: str, reason: Annotated[str, typer.Option(help="Why")]) -> None:
    """Disable a whole bank (its entries stop matching at once)."""
    try:
        runtime().banks.update_bank(name, actor=CLI_ACTOR, enabled=False, reason=reason)
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(f"disabled bank {name}")


@bank_app.command("enable")
def bank_enable(name: str) -> None:
    """Re-enable a disabled bank."""
    try:
        runtime().banks.update_bank(name, actor=CLI_ACTOR, enabled=True)
    except TakedownError as exc:
        raise fail(exc) from None
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
    from takedown.domain.hashlists import HashRecord
    from takedown.signals import guess_signal_type, signal_type

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
        result = runtime().banks.add_hashes(name, records, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise fail(exc) from None
    _summary(result)


@bank_app.command("add-media")
def bank_add_media(
    name: str,
    files: Annotated[list[Path], typer.Argument(help="Image or video files")],
    source_id: Annotated[str | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Hash images and videos and bank them: an image's PDQ, MD5 and SHA-256, a video's
    frame hashes (vpdq), MD5 and SHA-256. Each file's entries are linked: `takedown entry
    disable` disables them all."""
    from takedown.services.banks.service import Provenance

    rt = runtime()
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


def _media_enabled(
    name: str, enabled: bool, file: Path | None, sha256: str | None, reason: str | None
) -> None:
    if (file is None) == (sha256 is None):
        raise typer.BadParameter("Give the file or --sha256 (one of them).")
    try:
        data = file.read_bytes() if file is not None else None
    except OSError as exc:
        err.print(f"[red]error[/red]: cannot read {file}: {exc}")
        raise typer.Exit(code=2) from None
    try:
        change = runtime().banks.set_media_enabled(
            name, enabled, actor=CLI_ACTOR, data=data, sha256=sha256, reason=reason
        )
    except TakedownError as exc:
        raise fail(exc) from None
    word = "enabled" if enabled else "disabled"
    out.print(f"{word} {change.changed} of the file's {len(change.entries)} entries in {name}")
    for e in change.entries:
        out.print(f"  {e.id} {e.signal_type}: {'enabled' if e.enabled else 'disabled'}")


_MEDIA_FILE = Annotated[
    Path | None, typer.Argument(help="The file (image or video); or give --sha256")
]
_MEDIA_SHA256 = Annotated[
    str | None, typer.Option("--sha256", help="The file's SHA-256 instead of the file")
]


@bank_app.command("disable-media")
def bank_disable_media(
    name: str,
    reason: Annotated[str, typer.Option(help="Why, e.g. 'false positive: benign meme'")],
    file: _MEDIA_FILE = None,
    sha256: _MEDIA_SHA256 = None,
) -> None:
    """Disable a file's entries (a false positive): every signal banked from it, and any
    entry that is exactly one of its signals. Effective for the next query."""
    _media_enabled(name, False, file, sha256, reason)


@bank_app.command("enable-media")
def bank_enable_media(name: str, file: _MEDIA_FILE = None, sha256: _MEDIA_SHA256 = None) -> None:
    """Re-enable a file's entries."""
    _media_enabled(name, True, file, sha256, None)


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
    from takedown.domain.hashlists import FORMATS, detect_format

    fmt = fmt or detect_format(lines[0] if lines else "", file.name)
    if fmt not in FORMATS:
        err.print(f"[red]error[/red]: unknown format {fmt!r}; use {', '.join(FORMATS)}")
        raise typer.Exit(code=2)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from takedown.services.banks.service import Provenance

    rt = runtime()
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=real_console(err),
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
            raise fail(exc) from None
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
    rt = runtime()
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
        raise fail(exc) from None


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


# -- entries ----------------------------------------------------------------------------
_ONLY_THIS = Annotated[
    bool,
    typer.Option(
        "--only-this",
        help="Change this entry only, not the other signals (PDQ, MD5, SHA-256...) of the "
        "file it was banked from; an upload of that file may then still match.",
    ),
]


@entry_app.command("disable")
def entry_disable(
    entry_id: str,
    reason: Annotated[str, typer.Option(help="Why, e.g. 'false positive: benign meme'")],
    only_this: _ONLY_THIS = False,
) -> None:
    """Disable an entry (e.g. a false positive) and the other signals of the file it was
    banked from; effective for the next query. To name the file instead of an entry:
    `takedown bank disable-media`."""
    try:
        change = runtime().banks.set_entry_enabled(
            entry_id, False, actor=CLI_ACTOR, reason=reason, all_signals=not only_this
        )
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(f"disabled entry {change.id} ({change.signal_type})")
    for e in change.siblings:
        out.print(f"disabled entry {e.id} ({e.signal_type}): same file")


@entry_app.command("enable")
def entry_enable(entry_id: str, only_this: _ONLY_THIS = False) -> None:
    """Re-enable an entry and the other signals of the file it was banked from."""
    try:
        change = runtime().banks.set_entry_enabled(
            entry_id, True, actor=CLI_ACTOR, all_signals=not only_this
        )
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(f"enabled entry {change.id} ({change.signal_type})")
    for e in change.siblings:
        out.print(f"enabled entry {e.id} ({e.signal_type}): same file")
