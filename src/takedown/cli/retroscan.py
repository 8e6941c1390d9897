"""``takedown retroscan BANK``: retroactive matching on demand, its progress, the Spark
engine, and matches found elsewhere; ``takedown registry export``: the registry as the
Parquet dataset the Spark engine scans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from takedown.cli.common import CLI_ACTOR, err, fail, out, print_json_lines, runtime
from takedown.errors import TakedownError

registry_app = typer.Typer(
    rich_markup_mode=None,
)

_JSON = Annotated[bool, typer.Option("--json", help="One JSON object per line, every field whole.")]


def retroscan(
    bank: Annotated[str, typer.Argument(help="The bank (name or id).")],
    status: Annotated[
        bool, typer.Option("--status", help="List the bank's scans and their progress.")
    ] = False,
    queue_only: Annotated[
        bool, typer.Option("--queue-only", help="Queue the rescan for `takedown worker`.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="db: the registered media in Takedown's database; spark: "
            "a Parquet dataset (--media) scanned by a PySpark job."
        ),
    ] = "db",
    media: Annotated[
        Path | None,
        typer.Option(help="spark: the Parquet dataset (item_id, account_id, signal_type, signal)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="spark: where the NDJSON matches go.")
    ] = None,
    master: Annotated[str, typer.Option(help="spark: the Spark master.")] = "local[*]",
    ingest: Annotated[
        Path | None,
        typer.Option(help="Act on matches found elsewhere (NDJSON from --engine spark)."),
    ] = None,
    json_lines: _JSON = False,
) -> None:
    """Rescan the registered media against the whole bank (queued, then run here unless
    --queue-only), show the bank's scans (--status), scan a warehouse's Parquet hashes
    with Spark (--engine spark), or act on the matches it found (--ingest)."""
    rt = runtime()
    try:
        if ingest is not None:
            with ingest.open(encoding="utf-8") as f:
                result = rt.retroscan.ingest(f, actor=CLI_ACTOR)
            if json_lines:
                print_json_lines([result])
            else:
                out.print(
                    f"{result.lines} line(s): {result.new_pairs} new match(es), "
                    f"{result.already_known} known; cases: {', '.join(result.cases) or '-'}"
                )
            return
        if engine == "spark":
            if media is None or output is None:
                err.print("--engine spark needs --media PATH and --out FILE")
                raise typer.Exit(code=2)
            if "://" not in str(media) and not media.exists():
                err.print(f"--media: no dataset at {media}")
                raise typer.Exit(code=2)
            _need_spark()
            from takedown.integrations.spark import scan_parquet

            index = rt.retroscan.bank_index(bank)
            found = scan_parquet(index, str(media), str(output), master=master)
            if json_lines:
                out.print_json(data={"matches": found, "out": str(output)})
            else:
                out.print(f"{found} match(es) written to {output}")
            return
        if engine != "db":
            err.print("--engine is db or spark")
            raise typer.Exit(code=2)
        if status:
            jobs = rt.retroscan.list_jobs(bank)
            if json_lines:
                print_json_lines(jobs)
            else:
                for j in jobs:
                    out.print(
                        f"{j.id} {j.kind} {j.state}: {j.media_scanned}/{j.media_total or '?'}"
                        f" media, {j.matches} match(es), {j.cases} case(s)"
                    )
            return
        job = rt.retroscan.rescan_bank(bank, actor=CLI_ACTOR)
        if not queue_only:
            rt.retroscan.run_pending()
            job = next(j for j in rt.retroscan.list_jobs(bank) if j.id == job.id)
        if json_lines:
            print_json_lines([job])
        else:
            out.print(
                f"{job.id} {job.state}: {job.media_scanned} media scanned, "
                f"{job.matches} match(es), {job.cases} case(s)"
            )
    except TakedownError as exc:
        raise fail(exc) from None


@registry_app.command("export")
def registry_export(
    output: Annotated[Path, typer.Option("--out", help="The dataset's directory.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet")] = "parquet",
    json_lines: _JSON = False,
) -> None:
    """Write the registered media's signals as a Parquet dataset (item_id, account_id,
    signal_type, signal), partitioned by signal_type: the shape `takedown retroscan
    --engine spark` scans."""
    if fmt != "parquet":
        err.print("--format is parquet")
        raise typer.Exit(code=2)
    _need_spark()
    from takedown.integrations.spark import write_registry_parquet

    rt = runtime()
    rows = write_registry_parquet(rt.retroscan.registry_rows(), str(output))
    if json_lines:
        out.print_json(data={"rows": rows, "out": str(output)})
    else:
        out.print(f"{rows} row(s) written to {output}")


def _need_spark() -> None:
    import importlib.util

    for module in ("pyspark", "pyarrow"):
        if importlib.util.find_spec(module) is None:
            err.print(f"{module} is not installed: pip install 'takedown[spark]'")
            raise typer.Exit(code=2)
