"""``takedown legal …``: the reporting queue, due work, and the compliance reports.

Run ``takedown legal run`` from cron (every few minutes) where no serving process does
it: it retries CyberTipline filings that are due, raises overdue-report alerts and, when
a DSA token is set, sends pending statements of reasons.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from takedown.cli.common import fail, runtime
from takedown.errors import TakedownError

legal_app = typer.Typer(
    rich_markup_mode=None,
)


def _when(value: str) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or an ISO time with a zone."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@legal_app.command("queue")
def queue(
    all_cases: Annotated[bool, typer.Option("--all", help="Include reported.")] = False,
) -> None:
    """Confirmed reportable cases as JSON lines: knowledge time, escalation, filings."""
    rt = runtime()
    try:
        for entry in rt.legal.queue(include_reported=all_cases):
            sys.stdout.write(
                json.dumps(entry.__dict__, default=lambda o: getattr(o, "__dict__", str(o))) + "\n"
            )
    finally:
        rt.close()


@legal_app.command("run")
def run() -> None:
    """Retry due CyberTipline filings, raise overdue alerts (reports; hash exchanges not
    synced for 24 hours), send DSA statements."""
    rt = runtime()
    settings = rt.settings
    try:
        filings = rt.cybertipline.run_due()
        alerts = rt.legal.check_alerts()
        stale = rt.exchanges.check_stale(settings.legal_alert_email)
        result: dict[str, object] = {
            "filings_run": filings,
            "alerts": alerts,
            "stale_exchanges": stale,
        }
        if settings.dsa_token_value():
            result["dsa"] = rt.dsa.submit_due().__dict__
        else:
            result["dsa_statements_written"] = rt.dsa.collect()
        sys.stdout.write(json.dumps(result) + "\n")
    except TakedownError as exc:
        raise fail(exc) from None
    finally:
        rt.close()


_START = Annotated[str, typer.Option(help="Start (YYYY-MM-DD or ISO time), inclusive.")]
_END = Annotated[str, typer.Option(help="End, exclusive.")]
_FORMAT = Annotated[str, typer.Option("--format", help="json or csv")]


@legal_app.command("transparency")
def transparency(start: _START, end: _END, fmt: _FORMAT = "json") -> None:
    """DSA Art. 15/24 transparency figures for a period."""
    _period_report(start, end, fmt, as_csv="dsa_csv", as_json="dsa_report")


@legal_app.command("take-it-down")
def take_it_down(start: _START, end: _END, fmt: _FORMAT = "json") -> None:
    """TAKE IT DOWN Act compliance: requests, time to removal, copies, late ones and why."""
    _period_report(start, end, fmt, as_csv="take_it_down_csv", as_json="take_it_down")


def _period_report(
    start: str,
    end: str,
    fmt: str,
    *,
    as_csv: str,
    as_json: str,
) -> None:
    """Print one of TransparencyService's period reports (the methods named) as CSV or
    JSON."""
    rt = runtime()
    try:
        a, b = _when(start), _when(end)
        if fmt == "csv":
            text = getattr(rt.transparency, as_csv)(a, b)
        else:
            text = json.dumps(getattr(rt.transparency, as_json)(a, b), indent=2) + "\n"
        sys.stdout.write(text)
    except (TakedownError, ValueError) as exc:
        raise fail(
            exc
            if isinstance(exc, TakedownError)
            else TakedownError(str(exc), code="invalid_date_range")
        ) from None
    finally:
        rt.close()
